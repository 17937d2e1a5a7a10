"""Bad input, part 2: output over input, code in artifacts, zip bombs, unbounded or non-finite settings, row indexes,
text read as missing, JSON lines, damaged artifacts and checkpoints, the web app's temporary folders, and the run folder
(what a new run may replace, --overwrite, the lock, SIGTERM, write errors, folders left behind).

Each case checks the exit code, a message naming the problem, no traceback, the user's files unchanged and nothing left behind.
Refusals run `phi_cls.cli.main` in this process (`here`); a subprocess only where the process itself is the point (SIGTERM)."""
import dataclasses, hashlib, json, os, platform, shutil, signal, subprocess, sys, time, zipfile
from pathlib import Path

import pandas as pd
import pytest
import torch
from safetensors.torch import load_file, save_file

from conftest import REPO, TINY_FLAGS, phi_cls_here as here

WRONG = "We need 7 * 8.\n7 * 8 = 54\nSo the answer is 54."


def _tree(folder) -> dict:
    "Every file and folder under `folder` (but its tmp/, see `_env`) with the sha256 of its bytes (folders: None), to compare before and after."
    folder = Path(folder)
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest() if p.is_file() else None
            for p in sorted(folder.rglob("*")) if p.relative_to(folder).parts[0] != "tmp"}


def _env(tmp):
    "The environment of a run whose temporary files go to `tmp` (which must be empty afterwards)."
    tmp.mkdir(exist_ok=True)
    return dict(os.environ, TMPDIR=str(tmp))


def _left_in(tmp) -> list:
    "What a run left in its temporary folder, besides the (empty) cache folder torch makes there."
    return [p for p in tmp.iterdir() if not (p.name.startswith("torchinductor_") and not any(p.iterdir()))]


def _refused(proc, *parts, code=2):
    assert proc.returncode == code, (proc.returncode, proc.stderr[-2000:])
    assert "Traceback" not in proc.stderr + proc.stdout, proc.stderr[-2000:]
    for part in parts: assert part in proc.stderr, (part, proc.stderr[-2000:])


@pytest.fixture(scope="module")
def rows():
    return pd.DataFrame({"index": [1, 2, 3], "question": ["What is 7 times 8?", "What is 2 + 2?", "What is 3 * 3?"],
                         "solution": [WRONG, "2 + 2 = 4", "3 * 3 = 9"], "label": [1, 0, 0]})


# 1. the output file is the input file

@pytest.mark.parametrize("command", ["predict", "check"])
@pytest.mark.parametrize("output", ["in.csv", "./in.csv", "link.csv", "in.csv.tmp-of"])
def test_output_is_input(tiny_run, tmp_path, rows, command, output):
    data = tmp_path / "data"; data.mkdir()
    rows.to_csv(data / "in.csv", index=False)
    (data / "link.csv").symlink_to(data / "in.csv")
    inp = "in.csv"
    if output == "in.csv.tmp-of":  # the input is named like the output's temporary file
        os.replace(data / "in.csv", data / "out.csv.tmp"); (data / "link.csv").unlink()
        inp, output = "out.csv.tmp", "out.csv"
    before = _tree(data)
    model = ["--model", tiny_run / "probe"] if command == "predict" else []
    proc = here(command, *model, "--input", inp, "--output", output, "--no-progress", cwd=data, env=_env(tmp_path / "tmp"))
    _refused(proc, f"output '{output}' is the input file '{inp}'", "Choose another output file name")
    assert _tree(data) == before and not _left_in(tmp_path / "tmp")


# 2. code inside an artifact

def _auto_map(art):
    config = json.loads((art / "tokenizer_config.json").read_text())
    config.update(tokenizer_class="EvilTokenizer", auto_map={"AutoTokenizer": ["evil.EvilTokenizer", None]})
    (art / "tokenizer_config.json").write_text(json.dumps(config))


def _evil_py(art, marker):
    (art / "evil.py").write_text(f"open({str(marker)!r}, 'w').write('ran')\nfrom transformers import PreTrainedTokenizerFast as EvilTokenizer\n")


@pytest.mark.parametrize("damage, message", [
    (lambda art, marker: _auto_map(art), "tokenizer_config.json has an 'auto_map', which asks transformers to run custom code"),
    (lambda art, marker: (_auto_map(art), _evil_py(art, marker)), "holds a code file (evil.py)"),
    (lambda art, marker: torch.save({"weight": torch.zeros(2, 64)}, art / "pytorch_model.bin"), "holds pytorch_model.bin, a weights format that can run code"),
])
def test_artifact_with_code_is_refused(tiny_run, tmp_path, damage, message):
    art, marker = tmp_path / "art", tmp_path / "ran.txt"
    shutil.copytree(tiny_run / "probe", art)
    damage(art, marker)
    pd.DataFrame({"question": ["q"], "solution": ["s"]}).to_csv(tmp_path / "in.csv", index=False)
    before = _tree(tmp_path)
    proc = here("predict", "--model", art, "--input", tmp_path / "in.csv", "--output", tmp_path / "out.csv", "--no-progress",
                env=_env(tmp_path / "tmp"))  # a prompt would read pytest's stdin, which refuses to be read
    _refused(proc, message, "never runs code")
    assert "[y/N]" not in proc.stdout + proc.stderr and not marker.exists()
    assert _tree(tmp_path) == before and not _left_in(tmp_path / "tmp")


# 3. zip bombs

def _zip(path, entries:dict):
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as z:
        for name, data in entries.items(): z.writestr(name, data)
    return path


@pytest.mark.parametrize("make, limit, message", [
    (lambda p, run: _zip(p, {"probe/classifier.json": "{}", "probe/zeros.safetensors": bytes(16 * 2**20)}), None,
     "has an entry 'probe/zeros.safetensors' that expands"),
    (lambda p, run: _zip(p, {f"probe/{i}.json": "" for i in range(10_001)}), None, "has 10,001 entries, more than 10,000"),
    (lambda p, run: _zip(p, {"probe/classifier.json": "{}", "../../evil.json": "{}"}), None, "entry named '../../evil.json', which points outside"),
    (lambda p, run: shutil.copy(run / "artifacts.zip", p), 100_000, "MiB, more than 0.1 MiB"),  # a small MAX_ZIP_BYTES
])
def test_zip_bomb_is_refused(tiny_run, tmp_path, make, limit, message):
    data = tmp_path / "data"; data.mkdir()
    make(data / "a.zip", tiny_run)
    pd.DataFrame({"question": ["q"], "solution": ["s"]}).to_csv(data / "in.csv", index=False)
    before = _tree(tmp_path)
    patch = (lambda mp: mp.setattr("phi_cls.artifact.MAX_ZIP_BYTES", limit)) if limit else None
    proc = here("predict", "--model", data / "a.zip", "--kind", "probe", "--input", data / "in.csv", "--output", data / "out.csv",
                "--no-progress", env=_env(tmp_path / "tmp"), patch=patch)
    _refused(proc, str(data / "a.zip"), message, "not extracted")
    assert _tree(tmp_path) == before and not _left_in(tmp_path / "tmp")  # no extraction folder left


# 4. settings that are not finite or far too large, and runs that become NaN

@pytest.mark.parametrize("flags, message", [
    (["--learning-rate", "inf"], "learning_rate=inf is not a finite number"),
    (["--weight-decay", "nan"], "weight_decay=nan is not a finite number"),
    (["--epochs", "inf"], "epochs=inf is not a finite number"),
    (["--epochs", "1e9"], "epochs=1000000000.0 is more than 1000, the largest value allowed"),
    (["--max-length", "1000000"], "max_length=1000000 is more than 131072"),
    (["--lora-r", "5000"], "lora_r=5000 is more than 1024"),
    (["--batch-size", "100000"], "batch_size=100000 is more than 4096"),
    (["--seed", "-1"], "seed=-1 must not be negative"),
])
def test_unbounded_settings(tmp_path, flags, message):
    proc = here("train", "--out", tmp_path / "run", *TINY_FLAGS, *flags, env=_env(tmp_path / "tmp"))
    _refused(proc, message)
    assert not (tmp_path / "run").exists() and not _left_in(tmp_path / "tmp")


def _nan_loss(mp):
    import functools, phi_cls.model as m
    forward = m.PhiClassifier.forward
    @functools.wraps(forward)  # the Trainer keeps the columns forward names
    def nan_forward(self, *a, **kw):
        out = forward(self, *a, **kw)
        if self.training:  # the logits too: with class weights the Trainer computes the loss from them
            out.logits = out.logits * float("nan")
            if out.loss is not None: out.loss = out.loss * float("nan")
        return out
    mp.setattr(m.PhiClassifier, "forward", nan_forward)


def test_nan_loss_fails_the_run(tmp_path):
    proc = here("train", "--mode", "lora", "--out", tmp_path / "run", *TINY_FLAGS, env=_env(tmp_path / "tmp"), patch=_nan_loss)
    _refused(proc, "lora: the training loss is nan at step 1 (epoch 0.00): training diverged", "Lower learning_rate")
    card = json.loads((tmp_path / "run" / "run.json").read_text())
    assert card["status"] == "failed" and "nan at step 1" in card["error"]
    assert not (tmp_path / "run" / "metrics.json").exists() and not list((tmp_path / "run").rglob("*.tmp"))


def test_nan_weights_fail_prediction(tiny_run, tmp_path, rows):
    art = tmp_path / "art"
    shutil.copytree(tiny_run / "probe", art)
    head = load_file(art / "head.safetensors")
    save_file({k: v * float("nan") if k == "weight" else v for k, v in head.items()}, art / "head.safetensors")  # heads are bias-free
    rows.to_csv(tmp_path / "in.csv", index=False)
    before = _tree(tmp_path)
    proc = here("predict", "--model", art, "--input", tmp_path / "in.csv", "--output", tmp_path / "out.csv", "--no-progress",
                env=_env(tmp_path / "tmp"))
    _refused(proc, "predicting gave NaN or infinite probabilities for 3 of 3 rows (rows [0, 1, 2])")
    assert _tree(tmp_path) == before and not _left_in(tmp_path / "tmp")


# 5-7. row indexes, text that pandas would read as missing, JSON lines

@pytest.mark.parametrize("index, message", [
    ([7.2, 7.9, 3], "column 'index' is missing, not a whole number or beyond 64-bit integers in 2 rows: row 0 (7.2), row 1 (7.9)"),
    ([1e30, 2e30, 3], "beyond 64-bit integers in 2 rows: row 0 (1e+30), row 1 (2e+30)"),
])
def test_bad_index(tmp_path, rows, index, message):
    rows.assign(index=index).to_csv(tmp_path / "in.csv", index=False)
    before = _tree(tmp_path)
    proc = here("check", "--input", tmp_path / "in.csv", "--output", tmp_path / "out.csv", "--no-progress", env=_env(tmp_path / "tmp"))
    _refused(proc, "in.csv", message)
    assert _tree(tmp_path) == before and not _left_in(tmp_path / "tmp")


def test_text_none_and_na_are_text(tmp_path):
    pd.DataFrame({"question": ["None", "q"], "solution": ["NA", "7 * 8 = 54"], "label": [0, 1]}).to_csv(tmp_path / "in.csv", index=False)
    proc = here("check", "--input", tmp_path / "in.csv", "--output", tmp_path / "out.csv", "--no-progress")  # streaming reader
    assert proc.returncode == 0 and "2 rows" in proc.stdout and pd.read_csv(tmp_path / "out.csv")["checker_flawed"].tolist() == [0, 1]
    from phi_cls.data import read_table, validate_frame  # the whole-file reader (training data)
    df = validate_frame(read_table(tmp_path / "in.csv"), "in.csv")
    assert df[["question", "solution"]].values.tolist()[0] == ["None", "NA"]


def test_blank_text_is_still_empty(tmp_path):
    (tmp_path / "in.csv").write_text("question,solution\nq,\nq,s\n")
    before = _tree(tmp_path)
    proc = here("check", "--input", tmp_path / "in.csv", "--output", tmp_path / "out.csv", "--no-progress", env=_env(tmp_path / "tmp"))
    _refused(proc, "column 'solution' is empty or not text in 1 row: row 0 (nan)")
    assert _tree(tmp_path) == before and not _left_in(tmp_path / "tmp")


@pytest.mark.parametrize("command", ["check", "train"])
def test_jsonl_error_names_the_line(tmp_path, command):
    lines = [json.dumps({"question": f"What is {i} + 1?", "solution": f"{i} + 1 = {i + 1}", "label": 0, "split": "train"}) for i in range(5000)]
    lines[4498] = '{"question": "What is 1 + 1?" "solution": "2"}'  # line 4499, in the second chunk of `check`
    (tmp_path / "in.jsonl").write_text("\n".join(lines[:10] + [""] + lines[10:]) + "\n")  # a blank line: the bad one is on line 4500
    before = _tree(tmp_path)
    args = (["--input", tmp_path / "in.jsonl", "--output", tmp_path / "out.csv"] if command == "check"
            else [*TINY_FLAGS, "--data", tmp_path / "in.jsonl", "--out", tmp_path / "run"])  # --data after TINY_FLAGS' champ
    proc = here(command, *args, "--no-progress", env=_env(tmp_path / "tmp"))
    _refused(proc, "in.jsonl, line 4500: not valid JSON (Expecting ',' delimiter at column 31)")
    assert _tree(tmp_path) == before and not _left_in(tmp_path / "tmp")  # train checks the data before it makes the run folder


# 8. damaged artifacts and checkpoints name the file and the field

def _edit_info(art, change):
    info = json.loads((art / "classifier.json").read_text())
    change(info)
    (art / "classifier.json").write_text(json.dumps(info))


@pytest.mark.parametrize("change, message", [
    (lambda info: info.pop("backbone"), "classifier.json has no field 'backbone'"),
    (lambda info: info.update(max_length="abc"), "classifier.json: field 'max_length' is 'abc'; it must be a positive integer"),
    (lambda info: info.update(backbone=dict(info["backbone"], hidden_size="64")), "classifier.json: field 'backbone' is"),
])
def test_damaged_classifier_json(tiny_run, tmp_path, rows, change, message):
    art = tmp_path / "art"
    shutil.copytree(tiny_run / "lora", art)
    _edit_info(art, change)
    rows.to_csv(tmp_path / "in.csv", index=False)
    before = _tree(tmp_path)
    proc = here("predict", "--model", art, "--input", tmp_path / "in.csv", "--output", tmp_path / "out.csv", "--no-progress",
                env=_env(tmp_path / "tmp"))
    _refused(proc, str(art / "classifier.json"), message)
    assert _tree(tmp_path) == before and not _left_in(tmp_path / "tmp")


def test_truncated_checkpoint_on_resume(tiny_run, tmp_path):
    run = tmp_path / "run"
    shutil.copytree(tiny_run, run)
    card = json.loads((run / "run.json").read_text())
    card["status"] = "running"; card["done"].pop("lora")  # as a run killed during LoRA training leaves it
    (run / "run.json").write_text(json.dumps(card))
    ckpt = next((run / "checkpoints" / "lora").glob("checkpoint-*"))
    (ckpt / "model.safetensors").write_bytes((ckpt / "model.safetensors").read_bytes()[:100])
    before = _tree(run / "checkpoints")
    proc = here("train", "--mode", "both", "--out", run, *TINY_FLAGS, "--resume", env=_env(tmp_path / "tmp"))
    _refused(proc, f"checkpoint {ckpt / 'model.safetensors'} is incomplete or corrupted", f"Delete {ckpt.name}")
    assert _tree(run / "checkpoints") == before and not list(run.rglob("*.tmp")) and not _left_in(tmp_path / "tmp")
    assert json.loads((run / "run.json").read_text())["status"] == "failed"


# 9. the web app's batch tab leaves no temporary folders

def test_batch_scorer_cleans_up(tiny_run, tmp_path, rows, monkeypatch):
    import tempfile
    from phi_cls.predict import load_classifier
    from phi_cls.serve import BatchScorer
    clf = load_classifier(tiny_run / "probe")
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path / "tmp")); (tmp_path / "tmp").mkdir()
    rows.to_csv(tmp_path / "in.csv", index=False)
    pd.DataFrame({"text": ["x"]}).to_csv(tmp_path / "bad.csv", index=False)
    scorer, results = BatchScorer(clf), []
    for _ in range(3):
        results.append(scorer(tmp_path / "in.csv"))
        assert len(list((tmp_path / "tmp").glob("phi_cls-*"))) == 1  # the latest result, until Gradio has copied it
    assert Path(results[-1]["output"]).exists() and not Path(results[0]["output"]).exists()
    assert "no column 'question'" in scorer(tmp_path / "bad.csv")["error"]
    assert not list((tmp_path / "tmp").iterdir())  # a failed request leaves nothing, and the previous result is gone
    scorer(tmp_path / "in.csv"); scorer.cleanup()
    assert not list((tmp_path / "tmp").iterdir())


# 10. the run folder: checked before it is touched, one run per folder, only what phi_cls wrote is replaced

def _champ_files(folder, n_train=40, n_test=12):
    "train.csv and test.csv of CHAMP rows in `folder` (a data folder for --data)."
    from phi_cls.data import load_champ
    dd = load_champ()
    folder.mkdir(parents=True, exist_ok=True)
    dd["train"].to_pandas().head(n_train).to_csv(folder / "train.csv", index=False)
    dd["test"].to_pandas().head(n_test).to_csv(folder / "test.csv", index=False)
    return folder


def _results(out):
    (out / "checkpoints" / "lora" / "checkpoint-3").mkdir(parents=True)
    (out / "checkpoints" / "lora" / "checkpoint-3" / "model.safetensors").write_bytes(b"weights")
    (out / "metrics.json").write_text("{}"); (out / "artifacts.zip").write_bytes(b"zip")


@pytest.mark.parametrize("holds", ["results", "a finished run"])
def test_bad_data_leaves_the_run_folder_alone(tiny_run, tmp_path, holds):
    out = tmp_path / "run"
    if holds == "results": out.mkdir(); _results(out)
    else: shutil.copytree(tiny_run, out)
    (tmp_path / "bad.csv").write_text("question,solution,label,split\nq,s,2,train\nq2,s,0,test\n")
    before = _tree(tmp_path)
    proc = here("train", *TINY_FLAGS, "--data", tmp_path / "bad.csv", "--out", out, env=_env(tmp_path / "tmp"))
    _refused(proc, "bad.csv, split 'train', column 'label' is not 0 or 1")
    assert _tree(tmp_path) == before and not _left_in(tmp_path / "tmp")


@pytest.mark.parametrize("out, message", [("", "output_dir='' names no folder"), ("/", "output_dir='/' is the root folder"),
                                          ("~", "is your home folder")])
def test_out_must_be_a_folder_of_its_own(tmp_path, out, message):
    home = tmp_path / "home"; home.mkdir(); _results(home)
    env = dict(_env(tmp_path / "tmp"), HOME=str(home))
    root_card = Path("/run.json").exists()
    before = _tree(tmp_path)
    proc = here("train", "--out", str(home) if out == "~" else out, *TINY_FLAGS, cwd=home, env=env)
    _refused(proc, message, "a folder of its own" if out else "Give the run a folder")
    assert _tree(tmp_path) == before and Path("/run.json").exists() == root_card and not _left_in(tmp_path / "tmp")


def test_folder_with_other_files_is_refused(tmp_path):
    out = tmp_path / "run"; out.mkdir(); _results(out); (out / "notes.txt").write_text("mine")
    before = _tree(tmp_path)
    proc = here("train", "--out", out, *TINY_FLAGS, env=_env(tmp_path / "tmp"))
    _refused(proc, f"{out} holds files no phi_cls run card lists: artifacts.zip, checkpoints, metrics.json, notes.txt", "--overwrite")
    assert _tree(tmp_path) == before and not _left_in(tmp_path / "tmp")


def test_finished_run_is_refused(tiny_run, tmp_path):
    out = tmp_path / "run"
    shutil.copytree(tiny_run, out)
    before = _tree(tmp_path)
    proc = here("train", "--mode", "probe", "--out", out, *TINY_FLAGS, env=_env(tmp_path / "tmp"))
    _refused(proc, f"{out} holds a finished run: mode=both, model=tiny", "--overwrite")
    assert _tree(tmp_path) == before and not _left_in(tmp_path / "tmp")


def test_overwrite_moves_the_old_run_aside_and_zips_only_the_new_run(tiny_run, tmp_path):
    out = tmp_path / "data"  # the data folder is also --out, and holds a finished `both` run
    shutil.copytree(tiny_run, out)
    _champ_files(out)
    old_run, data = _tree(tiny_run), {k: v for k, v in _tree(out).items() if k in ("train.csv", "test.csv")}
    proc = here("train", "--mode", "probe", *TINY_FLAGS, "--data", out, "--out", out, "--overwrite", env=_env(tmp_path / "tmp"))
    assert proc.returncode == 0, proc.stderr[-3000:]
    (moved,) = out.glob("previous-*")
    assert "--overwrite: moved artifacts.zip, checkpoints, config.json, lora" in proc.stdout and str(moved) in proc.stdout and "Other files stay where they are: test.csv, train.csv" in proc.stdout
    assert _tree(moved) == old_run  # the old run, lora/ and all, byte for byte
    assert {k: v for k, v in _tree(out).items() if k in data} == data and not (out / "lora").exists()
    card = json.loads((out / "run.json").read_text())
    assert card["status"] == "finished" and "lora" not in card["files"] and not (out / ".phi_cls.lock").exists()
    names = zipfile.ZipFile(out / "artifacts.zip").namelist()
    assert {n.split("/")[0] for n in names} == {"run.json", "config.json", "metrics.json", "probe", "probe_baseline_predictions.csv"}
    from phi_cls.artifact import find_artifact
    assert find_artifact(out).name == "probe"  # `predict --model <run>` uses this run's probe, not the old LoRA
    assert not list(out.rglob("*.tmp")) and not _left_in(tmp_path / "tmp")


def test_resume_refuses_other_data(tmp_path):
    from phi_cls.cli import build_parser, config_from_args
    data, out = _champ_files(tmp_path / "data"), tmp_path / "run"
    cfg = config_from_args(build_parser().parse_args(["train", *map(str, TINY_FLAGS), "--data", str(data), "--out", str(out)]))
    out.mkdir()
    (out / "run.json").write_text(json.dumps(dict(status="interrupted", config=dataclasses.asdict(cfg), files=["run.json"], done={},
                                                  data=dict(fingerprint="0" * 64, rows={"train": 24, "validation": 8, "test": 12}))))
    before = _tree(tmp_path)
    proc = here("train", *TINY_FLAGS, "--data", data, "--out", out, "--resume", env=_env(tmp_path / "tmp"))
    _refused(proc, f"resume=True, but the data is not what the run in {out} started with (fingerprint 000000000000 then",
             "same row counts, other contents")
    assert _tree(tmp_path) == before and not _left_in(tmp_path / "tmp")


def test_second_run_is_refused_while_the_first_holds_the_folder(tmp_path):
    out, holder = tmp_path / "run", os.getppid()  # a live process other than this one (which runs the refused command)
    out.mkdir()
    (out / ".phi_cls.lock").write_text(json.dumps(dict(pid=holder, host=platform.node(), started="2026-01-01T10:00:00+00:00")))
    before = _tree(tmp_path)
    proc = here("train", "--out", out, *TINY_FLAGS, env=_env(tmp_path / "tmp"))
    _refused(proc, f"{out} is in use by another training run (pid {holder} on {platform.node()}, started 2026-01-01T10:00:00+00:00)")
    assert _tree(tmp_path) == before and not _left_in(tmp_path / "tmp")


def test_sigterm_marks_the_run_interrupted_and_frees_the_folder(tmp_path):
    out = tmp_path / "run"; out.mkdir()
    gone = int(subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True).stdout)
    (out / ".phi_cls.lock").write_text(json.dumps(dict(pid=gone, host=platform.node(), started="2026-01-01T10:00:00+00:00")))
    proc = subprocess.Popen([sys.executable, "-m", "phi_cls.cli", "train", "--mode", "lora", "--out", str(out), *map(str, TINY_FLAGS),
                             "--epochs", "50"], cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=_env(tmp_path / "tmp"))
    deadline = time.time() + 300
    while proc.poll() is None and time.time() < deadline:
        if (out / "run.json").exists() and json.loads((out / "run.json").read_text())["status"] == "running": break
        time.sleep(0.05)
    assert proc.poll() is None, "the run ended before it could be stopped"
    proc.send_signal(signal.SIGTERM)
    stdout, stderr = proc.communicate(timeout=300)
    assert proc.returncode == 128 + signal.SIGTERM and "phi-cls train: interrupted (stopped by SIGTERM)" in stderr, stderr[-2000:]
    assert "Traceback" not in stderr and f"taking over {out / '.phi_cls.lock'} from a run that is gone (pid {gone}" in stdout
    card = json.loads((out / "run.json").read_text())
    assert card["status"] == "interrupted" and not (out / ".phi_cls.lock").exists() and not list(out.rglob("*.tmp"))


def _disk_full(mp):
    save = torch.save
    def full(obj, f, *a, **kw):  # what a full disk looks like from torch.save
        if str(f).endswith("optimizer.pt"): raise RuntimeError("[enforce fail at inline_container.cc:626] . unexpected pos 1088 vs 1024")
        return save(obj, f, *a, **kw)
    mp.setattr(torch, "save", full)


def test_disk_full_during_a_checkpoint_is_named(tmp_path):
    out = tmp_path / "run"
    proc = here("train", "--mode", "probe", "--out", out, *TINY_FLAGS, "--epochs", "1", env=_env(tmp_path / "tmp"), patch=_disk_full)
    _refused(proc, f"could not write {out / 'checkpoints' / 'probe' / 'checkpoint-'}", "a write error (is the disk full?)",
             "Free some disk space")
    assert "unexpected error" not in proc.stderr
    card = json.loads((out / "run.json").read_text())
    assert card["status"] == "failed" and "could not write" in card["error"] and not (out / ".phi_cls.lock").exists()
    assert not list(out.rglob("*.tmp")) and not _left_in(tmp_path / "tmp")


@pytest.mark.parametrize("command", ["predict", "check"])
def test_output_that_is_a_folder(tiny_run, tmp_path, rows, command):
    rows.to_csv(tmp_path / "in.csv", index=False); (tmp_path / "out.csv").mkdir()
    before = _tree(tmp_path)
    model = ["--model", tiny_run / "probe"] if command == "predict" else []
    proc = here(command, *model, "--input", tmp_path / "in.csv", "--output", tmp_path / "out.csv", "--no-progress",
                env=_env(tmp_path / "tmp"))
    _refused(proc, f"output '{tmp_path / 'out.csv'}' is a folder; give a file name")
    assert _tree(tmp_path) == before and not _left_in(tmp_path / "tmp")


@pytest.mark.parametrize("command", ["predict", "check"])
def test_bad_input_makes_no_output_folders(tiny_run, tmp_path, command):
    pd.DataFrame({"question": ["q"], "text": ["s"]}).to_csv(tmp_path / "in.csv", index=False)
    before = _tree(tmp_path)
    model = ["--model", tiny_run / "probe"] if command == "predict" else []
    proc = here(command, *model, "--input", tmp_path / "in.csv", "--output", tmp_path / "new" / "dir" / "x.csv", "--no-progress",
                env=_env(tmp_path / "tmp"))
    _refused(proc, "in.csv has no column 'solution'")
    assert _tree(tmp_path) == before and not _left_in(tmp_path / "tmp")
