"""`phi-cls train` end to end on the tiny model: what a run writes, and that it is right (predictions, metrics, the
decisions fitted on validation, shortcut baselines, checkpoints, the training log), that a same-seed run repeats it byte
for byte, that a diverging run fails, and that two processes (torchrun) give one correct run folder.
Most tests read the session's tiny run (conftest's `tiny_run`, the real command in a subprocess)."""
import functools, json, os, shutil, subprocess, sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from safetensors import safe_open
from safetensors.torch import load_file

import phi_cls
from conftest import PRED_FILES, REPO, SLOW, TINY_FLAGS, phi_cls_here as here
from phi_cls.data import load_champ, training_splits

COLUMNS = ["index", "true_label", "p(class=0)", "p(class=1)"]
OLD_KEYS = {"accuracy", "precision", "recall", "f1", "confusion_matrix", "n", "threshold", "n_train", "train_seconds"}


# the run folder and its files

def test_run_folder_is_complete(tiny_run):
    names = {p.name for p in tiny_run.iterdir()}
    assert {"probe_baseline_predictions.csv", "lora_finetuned_predictions.csv", "metrics.json", "config.json",
            "artifacts.zip", "probe", "lora"} <= names
    assert not list(tiny_run.rglob("*.tmp"))
    for kind in ("probe", "lora"):
        files = {p.name for p in (tiny_run / kind).iterdir()}
        assert {"head.safetensors", "classifier.json", "tokenizer.json", "training_log.json"} <= files
    assert (tiny_run / "lora" / "adapter" / "adapter_model.safetensors").exists()
    assert not (tiny_run / "probe" / "adapter").exists()


@pytest.mark.parametrize("kind", ["probe", "lora"])
def test_predictions_match_metrics(tiny_run, kind):
    preds = pd.read_csv(tiny_run / PRED_FILES[kind])
    metrics = json.loads((tiny_run / "metrics.json").read_text())[kind]
    assert list(preds.columns) == COLUMNS
    assert len(preds) == metrics["n"] == 12 and preds["index"].is_unique
    np.testing.assert_allclose(preds["p(class=0)"] + preds["p(class=1)"], 1.0, atol=1e-6)
    pred = (preds["p(class=1)"] >= metrics["threshold"]).astype(int)  # the threshold fitted on validation
    assert metrics["accuracy"] == pytest.approx((pred == preds["true_label"]).mean())
    tp = int(((pred == 1) & (preds.true_label == 1)).sum()); fp = int(((pred == 1) & (preds.true_label == 0)).sum())
    assert metrics["confusion_matrix"][0][1] == fp and metrics["confusion_matrix"][1][1] == tp
    assert metrics["n_train"] == 24 and metrics["train_seconds"] > 0


def test_test_rows_are_champ_test_split(tiny_run):
    test_index = set(load_champ()["test"]["index"])
    assert set(pd.read_csv(tiny_run / PRED_FILES["lora"])["index"]) <= test_index


def test_config_records_what_ran(tiny_run):
    cfg = json.loads((tiny_run / "config.json").read_text())
    assert cfg["config"]["mode"] == "both" and cfg["config"]["learning_rate"] == 2e-4 and cfg["config"]["lora_r"] == 16
    res = cfg["resolved"]
    assert res["device"] == "cpu" and res["quantize"] == "none" and res["optim"] == "adamw_torch"
    assert res["precision"] in ("bf16", "fp32") and res["cpu_kind"]
    assert {"torch", "transformers", "peft", "phi_cls"} <= set(cfg["versions"])


def test_checkpoints_hold_trainable_weights_only(tiny_run):
    "Tied embeddings never reach safetensors: each epoch's checkpoint has just LoRA + head (transformers#27613)."
    ckpts = sorted((tiny_run / "checkpoints" / "lora").glob("checkpoint-*"))
    assert 1 <= len(ckpts) <= 2  # save each epoch, keep the last and the best (lowest validation loss)
    with safe_open(ckpts[0] / "model.safetensors", "pt") as f:
        keys = list(f.keys())
    assert keys and all("lora_" in k or k.startswith("head.") for k in keys)


def test_lora_b_matrices_trained(tiny_run):
    "LoRA B starts at zero; a broken gradient path leaves it there (peft#742)."
    with safe_open(tiny_run / "lora" / "adapter" / "adapter_model.safetensors", "pt") as f:
        norms = [f.get_tensor(k).abs().sum().item() for k in f.keys() if "lora_B" in k]
    assert norms and min(norms) > 0


def test_training_log_has_losses(tiny_run):
    log = json.loads((tiny_run / "lora" / "training_log.json").read_text())
    losses = [e["loss"] for e in log if "loss" in e]
    assert losses and abs(losses[0] - np.log(2)) < 0.1  # the head starts near zero: first loss about ln 2


# decisions fitted on validation (issue 12): threshold, temperature, best epoch, recorded where a user looks

@pytest.mark.parametrize("kind", ["probe", "lora"])
def test_decisions_fitted_on_validation_and_recorded(tiny_run, kind):
    info = json.loads((tiny_run / kind / "classifier.json").read_text())
    metrics = json.loads((tiny_run / "metrics.json").read_text())[kind]
    assert info["decision"]["n_validation"] == 12 and info["decision"]["fitted"].startswith("on 12 validation rows")
    assert 0 <= info["threshold"] <= 1 and info["temperature"] > 0
    assert metrics["threshold"] == info["threshold"] and metrics["decision"]["temperature"] == info["temperature"]
    preds = pd.read_csv(tiny_run / PRED_FILES[kind])  # calibrated probabilities, scored at the fitted threshold
    called = preds["p(class=1)"] >= info["threshold"]
    assert metrics["accuracy"] == pytest.approx((called == preds["true_label"]).mean())
    assert metrics["raw"]["threshold"] == 0.5 and set(metrics["ece"]) == {"test", "validation"}
    assert all(0 <= v <= 1 for split in metrics["ece"].values() for v in (split["before"], split["after"]))


def test_best_epoch_is_the_saved_one(tiny_run):
    card = json.loads((tiny_run / "run.json").read_text())
    best = card["best_epoch"]["lora"]
    assert best["epoch"] in (1.0, 2.0) and best["eval_loss"] > 0
    kept = load_file(tiny_run / "checkpoints" / "lora" / f"checkpoint-{best['step']}" / "model.safetensors")
    saved = load_file(tiny_run / "lora" / "head.safetensors")
    np.testing.assert_array_equal(kept["head.weight"].float().numpy(), saved["weight"].numpy())
    assert card["class_weights"] == "none (all 1)" or len(card["class_weights"]) == 2


# shortcut baselines and intervals in metrics.json, and the warning line train prints

def test_tiny_run_metrics_have_baselines_and_intervals(tiny_run):
    metrics = json.loads((tiny_run / "metrics.json").read_text())
    base = metrics["baselines"]
    assert set(base["results"]) == {"majority", "length", "tfidf", "source"} and base["scored_on"] == "test (12 rows)"
    for r in base["results"].values():
        lo, hi = r["intervals"]["balanced_accuracy"]
        assert lo <= r["balanced_accuracy"] <= hi and r["n"] == 12
    for mode in ("probe", "lora"):
        m = metrics[mode]
        assert OLD_KEYS <= set(m) and {"balanced_accuracy", "auroc", "intervals", "lift", "warning"} <= set(m)
        assert m["lift"]["over"] in base["results"]
        best = max(r["balanced_accuracy"] for r in base["results"].values())
        assert m["lift"]["balanced_accuracy"] == pytest.approx(m["balanced_accuracy"] - best)
        assert (m["warning"] is not None) == (round(best, 2) >= round(m["balanced_accuracy"], 2))
    printed = (tiny_run.parent / "tiny.stdout").read_text()
    assert "shortcut baselines, fitted on the classifier's training rows (24)" in printed and "TF-IDF" in printed
    assert all(f"warning: {metrics[m]['warning']}" in printed for m in ("probe", "lora") if metrics[m]["warning"])


# the same seed repeats the run; a diverging run fails

def test_same_seed_same_predictions(tiny_run, tmp_path):
    again = tmp_path / "again"
    assert here("train", "--mode", "both", "--out", again, *TINY_FLAGS).returncode == 0  # tiny_run: in another process
    for name in ("probe_baseline_predictions.csv", "lora_finetuned_predictions.csv"):
        assert (tiny_run / name).read_bytes() == (again / name).read_bytes(), name
    a, b = (json.loads((d / "run.json").read_text()) for d in (tiny_run, again))
    assert a["data"]["fingerprint"] == b["data"]["fingerprint"] and a["config"]["seed"] == b["config"]["seed"]
    assert a["versions"] == b["versions"] and a["resolved"] == b["resolved"]


def _nan_loss(mp):
    import phi_cls.model as m
    forward = m.PhiClassifier.forward
    @functools.wraps(forward)  # the Trainer keeps the columns forward names
    def nan_forward(self, *a, **kw):
        out = forward(self, *a, **kw)
        if self.training:  # the logits too: with class weights the Trainer computes the loss from them
            out.logits = out.logits * float("nan")
            if out.loss is not None: out.loss = out.loss * float("nan")
        return out
    mp.setattr(m.PhiClassifier, "forward", nan_forward)


@SLOW
def test_nan_loss_fails_the_run(tmp_path):
    tmp = tmp_path / "tmp"; tmp.mkdir()
    proc = here("train", "--mode", "lora", "--out", tmp_path / "run", *TINY_FLAGS,
                env=dict(os.environ, TMPDIR=str(tmp)), patch=_nan_loss)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr + proc.stdout, proc.stderr[-2000:]
    for part in ("lora: the training loss is nan at step 1 (epoch 0.00): training diverged", "Lower learning_rate"):
        assert part in proc.stderr, (part, proc.stderr[-2000:])
    card = json.loads((tmp_path / "run" / "run.json").read_text())
    assert card["status"] == "failed" and "nan at step 1" in card["error"]
    assert not (tmp_path / "run" / "metrics.json").exists() and not list((tmp_path / "run").rglob("*.tmp"))


# two processes

@SLOW
def test_torchrun_two_processes(tmp_path):
    torchrun = shutil.which("torchrun", path=str(Path(sys.executable).parent))
    out = tmp_path / "ddp"
    proc = subprocess.run([torchrun, "--nproc_per_node", "2", "-m", "phi_cls.cli", "train", "--model", "tiny", "--data",
                           "champ", "--out", str(out), "--max-train-samples", "32", "--max-eval-samples", "13",
                           "--max-length", "128", "--epochs", "2", "--no-progress"],
                          capture_output=True, text=True, cwd=REPO)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert proc.stdout.count("lora: test accuracy") == 1  # only the first process reports and writes
    card = json.loads((out / "run.json").read_text())
    assert card["status"] == "finished" and card["resolved"]["processes"] == 2
    assert card["resolved"]["micro_batch_size"] * card["resolved"]["accumulation_steps"] * 2 == 32
    test = training_splits(load_champ(), max_train_samples=32, max_eval_samples=13, seed=42)[2].to_pandas()
    metrics = json.loads((out / "metrics.json").read_text())
    for mode, csv in PRED_FILES.items():
        preds = pd.read_csv(out / csv)
        assert preds["index"].tolist() == test["index"].tolist()  # every test row once, in order, despite sharding
        called = preds["p(class=1)"] >= metrics[mode]["threshold"]
        assert metrics[mode]["n"] == 13 and metrics[mode]["accuracy"] == (called == preds["true_label"]).mean()
        np.testing.assert_allclose(phi_cls.load_classifier(out / mode).predict_proba(test)[:, 1], preds["p(class=1)"],
                                   atol=1e-5)
