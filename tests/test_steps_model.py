"""The step head: step labels on the right tokens (decoded), ignored positions that change nothing, steps cut by
truncation marked, and a positive control (a planted marker in exactly the first wrong step, which the tiny model's
step head must find); one tiny `train --steps --mode both --checker` run, its files, and `predict --steps` on its
artifacts. Runs without steps: no step file or key appears."""
import json, shutil

import numpy as np
import pandas as pd
import pytest
import torch

from conftest import SLOW, phi_cls as cli, phi_cls_here, planted, refused
from phi_cls.data import Collator, PromptEncoder, step_spans, tokenize
from phi_cls.model import PhiClassifier, init_head, load_backbone, load_tokenizer
from phi_cls.steps import IGNORE, step_targets

SOLUTIONS = [("What is 7 times 8?", "We need 7 * 8.\n7 * 8 = 54\nSo the answer is 54.", 1),
             ("Sum 12 and 30.", "  12 + 30 = 42  \n\nThe answer is 42.", -1),
             ("Halve 18.", "Half of 18 is 18 / 2 = 9.\nCheck: 9 + 9 = 18.\nDone: 9 apples (café).", 2)]
PARAGRAPHS = [("What is 7 times 8?", "We need 7 * 8.\n7 * 8 = 54\n\nSo the answer is 54.", 0),
              ("Sum 12 and 30.", "  12 + 30 = 42  \n\n\nThe answer is 42.\n", -1),
              ("Halve 18.", "Half of 18 is 9.\n\nCheck: 9 + 9 = 18.\n\nDone: 9 apples (café).", 2)]
ROWS = {"line": SOLUTIONS, "blank": PARAGRAPHS}


@pytest.fixture(scope="module")
def tok():
    return load_tokenizer("tiny")


@pytest.fixture(scope="module", params=["tiny", "embedded"])
def any_tok(request):
    "The tiny model's byte-level BPE and the embedded SmolLM2's (a real model's tokenizer, converted from GGUF)."
    return load_tokenizer(request.param)


def encoded(tok, separator="line", max_length=256, rows=SOLUTIONS):
    from datasets import Dataset
    ds = Dataset.from_dict(dict(question=[q for q, _, _ in rows], solution=[s for _, s, _ in rows],
                                label=[int(f >= 0) for _, _, f in rows], first_error_step=[f for _, _, f in rows]))
    return tokenize(ds, PromptEncoder(tok, max_length, separator), step_targets)


@pytest.mark.parametrize("separator", ["line", "blank"])
def test_every_step_label_sits_on_the_last_token_of_its_step(any_tok, separator):
    tok = any_tok
    ds = encoded(tok, separator, rows=ROWS[separator])
    for (_, solution, first), ids, ends, labels in zip(ROWS[separator], ds["input_ids"], ds["step_ends"],
                                                        ds["step_labels"]):
        spans = step_spans(solution, separator)
        assert len(ends) == len(labels) == len(spans)
        assert labels == step_targets(len(spans), first)
        for (a, b), e in zip(spans, ends):
            step = solution[a:b]
            last = tok.decode([ids[e]]).strip()
            assert last and step.endswith(last), (step, last)  # the labelled token is the step's final token
            assert tok.decode(ids[:e + 1]).endswith(step) and not tok.decode(ids[:e]).endswith(step)
        if first >= 0:  # the one target 1 is on the end of the first wrong step, later steps carry none
            a, b = spans[first]
            assert labels[first] == 1 and tok.decode(ids[:ends[first] + 1]).endswith(solution[a:b])
            assert set(labels[first + 1:]) <= {IGNORE}


@pytest.mark.parametrize("side", ["left", "right"])
def test_padding_moves_step_ends_with_their_tokens(tok, side):
    ds = encoded(tok)
    batch = Collator(tok.pad_token_id, side)([ds[i] for i in range(len(ds))])
    for i in range(len(ds)):
        row = ds[i]
        got = batch["input_ids"][i, batch["step_ends"][i, :len(row["step_ends"])]].tolist()
        assert got == [row["input_ids"][e] for e in row["step_ends"]]
        assert batch["step_labels"][i, :len(row["step_labels"])].tolist() == row["step_labels"]
        assert (batch["step_labels"][i, len(row["step_labels"]):] == IGNORE).all()


def test_unlabelled_steps_do_not_change_the_loss(tok):
    torch.manual_seed(0)
    backbone = load_backbone("tiny", device="cpu")
    clf = PhiClassifier(backbone, step_head=init_head(backbone.config.hidden_size)).eval()
    ds = encoded(tok)
    batch = Collator(tok.pad_token_id)([ds[i] for i in range(len(ds))])
    ignored = batch["step_labels"] == IGNORE
    assert ignored.any() and (~ignored).any()
    with torch.no_grad(): clf.step_head.weight.normal_(0, 1)  # logits far from zero, so any counted change shows
    inputs = {k: batch[k] for k in ("input_ids", "attention_mask", "step_ends", "step_labels")}

    def loss(noise=None):
        handle = None
        if noise is not None:  # move the logits of the ignored steps (and of padding) by a lot
            handle = clf.step_head.register_forward_hook(lambda m, args, out: out + noise * ignored[..., None])
        try:
            with torch.no_grad(): return clf(**inputs).loss.item()
        finally:
            if handle: handle.remove()
    base = loss()
    assert loss(torch.tensor([30.0, -30.0])) == pytest.approx(base, abs=1e-6)
    assert loss(torch.tensor([-30.0, 30.0])) == pytest.approx(base, abs=1e-6)
    relabelled = batch["step_labels"].masked_fill(ignored & (batch["step_ends"] >= 0), 1)  # were they labels...
    with torch.no_grad(): counted = clf(**dict(inputs, step_labels=relabelled)).loss.item()
    assert counted != pytest.approx(base, abs=1e-3)  # ...they would have counted


def test_truncation_marks_the_cut_steps(tok):
    solution = "\n".join(f"Line {i}: {i} + {i} = {2 * i}." for i in range(40)) + "\nSo the answer is 78."
    enc = PromptEncoder(tok, 128, "line")
    out = enc(["Double each number."], [solution])
    ids, ends, kept = out["input_ids"][0], out["step_ends"][0], sum(out["solution_mask"][0])
    assert out["truncated"] == [True]
    n_tokens = len(tok(solution, add_special_tokens=False)["input_ids"])
    for (a, b), e in zip(step_spans(solution), ends):  # a step is cut when its last token is among the dropped
        last_token = len(tok(solution[:b], add_special_tokens=False)["input_ids"]) - 1
        assert (e == -1) == (last_token < n_tokens - kept), (solution[a:b], e)
        if e >= 0: assert solution[a:b].endswith(tok.decode([ids[e]]).strip())
    cut = ends.count(-1)
    assert 0 < cut < len(ends) and ends[:cut] == [-1] * cut and ends[-1] == len(ids) - 1


def test_steps_need_first_error_steps(tmp_path):
    rows = pd.DataFrame(dict(question=[f"q{i}" for i in range(8)], solution=["1 + 1 = 2"] * 8, label=[0, 1] * 4,
                             split=["train"] * 4 + ["test"] * 4))
    rows.to_csv(tmp_path / "d.csv", index=False)
    refused("train", "--steps", "--data", tmp_path / "d.csv", "--model", "tiny", "--out", tmp_path / "run",
            says=["steps=True", "first_error_step", "without --steps"], watch=tmp_path)


@pytest.mark.parametrize("mode", ["probe", "lora"])
@pytest.mark.parametrize("case", ["unknown", "cut"])
def test_steps_need_a_first_wrong_step_to_learn(tmp_path, mode, case):
    """No flawed training row with a known first wrong step, or every one cut by truncation: refused before the run
    folder is made (LoRA too, which would otherwise train its step head on right steps only)."""
    flawed = [i % 2 == 1 for i in range(8)]
    if case == "unknown": sol, first = ["1 + 1 = 2\n2 + 2 = 4"] * 8, [None if f else -1 for f in flawed]
    else:  # the wrong step first, then 40 lines: truncation keeps the end
        sol = ["1 + 1 = 3\n" + "\n".join(f"{k} + 0 = {k}" for k in range(40))] * 8
        first = [0 if f else -1 for f in flawed]
    rows = pd.DataFrame(dict(question=[f"q{i}" for i in range(8)], solution=sol, label=[int(f) for f in flawed],
                             first_error_step=pd.array(first, dtype="Int64"), split=["train"] * 4 + ["test"] * 4))
    rows.to_csv(tmp_path / "d.csv", index=False)
    why = "no training row is flawed with a known first_error_step" if case == "unknown" else "cut by max_length=80"
    refused("train", "--mode", mode, "--steps", "--data", tmp_path / "d.csv", "--model", "tiny", "--out",
            tmp_path / "run", "--max-length", 80 if case == "cut" else 128,
            says=["steps=True: the training steps carry", why, "needs both right steps and first wrong steps"],
            watch=tmp_path)


# the positive control and a whole run

@pytest.fixture(scope="module")
def steps_run(tmp_path_factory):
    "A tiny `--mode both --steps --checker` run on planted data."
    folder = tmp_path_factory.mktemp("steps")
    parts = dict(train=planted(48, 0), validation=planted(16, 1, 100), test=planted(24, 2, 200))
    pd.concat([v.assign(split=k) for k, v in parts.items()]).to_csv(folder / "planted.csv", index=False)
    proc = cli("train", "--mode", "both", "--steps", "--checker", "--data", folder / "planted.csv", "--out",
               folder / "run", "--model", "tiny", "--max-length", "128", "--batch-size", "4", "--grad-accum", "2",
               "--epochs", "4", "--learning-rate", "5e-3", "--logging-steps", "5", "--no-progress", "--workers", "1")
    return folder / "run", parts["test"], proc.stdout


@SLOW
def test_positive_control_the_probe_finds_the_planted_first_wrong_step(steps_run):
    run, test, _ = steps_run
    steps = json.loads((run / "metrics.json").read_text())["probe"]["steps"]
    chance = max(steps[b]["f1"] or 0 for b in ("always -1", "last step", "random step"))
    assert steps["classifier"]["acc_flawed"] >= 0.8 and steps["classifier"]["acc_correct"] >= 0.8, steps["classifier"]
    assert steps["classifier"]["f1"] >= chance + 0.4
    lora = json.loads((run / "metrics.json").read_text())["lora"]["steps"]  # through the adapters, the same signal
    assert lora["classifier"]["f1"] >= chance + 0.4, lora["classifier"]
    csv = pd.read_csv(run / "probe_steps.csv").set_index("index").loc[test["index"]]
    assert (csv["true_first_error_step"].to_numpy() == test["first_error_step"].to_numpy()).all()


@SLOW
def test_steps_run_writes_its_files(steps_run):
    run, test, stdout = steps_run
    metrics = json.loads((run / "metrics.json").read_text())
    for mode in ("probe", "lora"):
        csv = pd.read_csv(run / f"{mode}_steps.csv")
        assert list(csv.columns) == ["index", "true_first_error_step", "first_error_step", "p_steps", "steps_unscored",
                                     "checker_step", "hybrid_step"]
        assert len(csv) == len(test) and (csv["steps_unscored"] == 0).all()
        p = [json.loads(s) for s in csv["p_steps"]]
        assert [len(x) for x in p] == [len(s.split("\n")) for s in test.set_index("index").loc[csv["index"],
                                                                                               "solution"]]
        m = metrics[mode]
        assert set(m["steps"]) == {"classifier", "checker", "hybrid", "always -1", "last step", "random step"}
        assert m["steps"]["checker"]["acc_flawed"] == 1.0  # its error line is in the first wrong step
        assert {"accuracy", "f1", "auroc"} <= set(m["steps_p_flawed"])
        info = json.loads((run / mode / "classifier.json").read_text())
        assert info["steps"]["separator"] == "line" and {"threshold", "rule", "validation_f1"} <= set(
        info["steps"]["decision"])
        assert (run / mode / "step_head.safetensors").exists()
        assert f"{mode}: first wrong step on {len(test)} test rows" in stdout
    assert "acc_flawed" in stdout and "random step" in stdout


@SLOW
def test_predict_steps_gives_the_runs_step_probabilities(steps_run, tmp_path):
    run, test, _ = steps_run
    test.drop(columns=["first_error_step"]).to_csv(tmp_path / "in.csv", index=False)
    for mode in ("probe", "lora"):
        cli("predict", "--model", run / mode, "--input", tmp_path / "in.csv", "--output", tmp_path / "out.csv",
            "--steps", "--checker", "--no-progress")
        out = pd.read_csv(tmp_path / "out.csv").set_index("index")
        saved = pd.read_csv(run / f"{mode}_steps.csv").set_index("index").loc[out.index]
        np.testing.assert_allclose(np.concatenate([json.loads(s) for s in out["p_steps"]]),
                                   np.concatenate([json.loads(s) for s in saved["p_steps"]]), atol=1e-5)
        for col in ("first_error_step", "checker_step", "hybrid_step"):
            assert (out[col] == saved[col]).all(), col
        assert (out["p_flawed_steps"] == [max(json.loads(s)) for s in out["p_steps"]]).all()
        assert (out["steps_unscored"] == 0).all()


@SLOW
def test_predict_steps_refused_without_a_step_head(steps_run, tmp_path):
    run, test, _ = steps_run
    plain = tmp_path / "plain"
    shutil.copytree(run / "probe", plain)
    info = json.loads((plain / "classifier.json").read_text())
    del info["steps"]
    (plain / "classifier.json").write_text(json.dumps(info))
    (plain / "step_head.safetensors").unlink()
    test.to_csv(tmp_path / "in.csv", index=False)
    refused("predict", "--model", plain, "--input", tmp_path / "in.csv", "--output", tmp_path / "out.csv", "--steps",
            says=["--steps", "trained without steps"], watch=tmp_path)


def test_runs_without_steps_write_no_step_file_or_key(tiny_run):
    assert not list(tiny_run.rglob("*steps*")) and not list(tiny_run.rglob("step_head*"))
    metrics = json.loads((tiny_run / "metrics.json").read_text())
    assert not [k for m in ("probe", "lora") for k in metrics[m] if "step" in k]
    for mode in ("probe", "lora"): assert "steps" not in json.loads((tiny_run / mode / "classifier.json").read_text())
    config = json.loads((tiny_run / "config.json").read_text())["config"]
    assert "steps" not in config and "step_separator" not in config


@SLOW
def test_an_interrupted_steps_run_leaves_no_steps_file_and_resumes(tmp_path):
    "Stopped while its files are written: no probe_steps.csv until the step head is saved; --resume ends the run."
    parts = dict(train=planted(16, 0), validation=planted(8, 1, 100), test=planted(8, 2, 200))
    pd.concat([v.assign(split=k) for k, v in parts.items()]).to_csv(tmp_path / "d.csv", index=False)
    args = ["train", "--mode", "probe", "--steps", "--data", tmp_path / "d.csv", "--out", tmp_path / "run", "--model",
            "tiny", "--max-length", "128", "--batch-size", "4", "--epochs", "1", "--no-progress", "--workers", "1"]

    def stop(mp):
        import phi_cls.train
        def save_classifier(*a, **k): raise KeyboardInterrupt
        mp.setattr(phi_cls.train, "save_classifier", save_classifier)
    proc = phi_cls_here(*args, patch=stop)
    assert proc.returncode != 0 and "Traceback" not in proc.stderr, proc.stderr[-2000:]
    assert json.loads((tmp_path / "run" / "run.json").read_text())["status"] == "interrupted"
    assert not (tmp_path / "run" / "probe_steps.csv").exists()
    proc = phi_cls_here(*args, "--resume")
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert len(pd.read_csv(tmp_path / "run" / "probe_steps.csv")) == 8
    assert json.loads((tmp_path / "run" / "run.json").read_text())["status"] == "finished"


def test_class_weights_keep_the_step_loss():
    """With class weights (on by default for unbalanced data, CHAMP's) the Trainer reweights the solution's loss
    itself; the step loss the model adds must stay in what it minimizes."""
    from transformers.modeling_outputs import SequenceClassifierOutput
    from phi_cls.trainer import ClassifierTrainer

    class Steps(torch.nn.Module):  # what PhiClassifier returns without labels: its step loss
        def forward(self, **inputs):
            assert "labels" not in inputs
            return SequenceClassifierOutput(loss=torch.tensor(5.0), logits=torch.zeros(2, 2))

    trainer = ClassifierTrainer.__new__(ClassifierTrainer)  # compute_loss alone; no training set up
    trainer.class_weights, trainer.step_losses = [0.6, 2.8], {}
    loss = trainer.compute_loss(Steps().eval(), {"input_ids": torch.zeros(2, 3), "labels": torch.tensor([0, 1])})
    assert loss.item() == pytest.approx(np.log(2) + 5.0)
