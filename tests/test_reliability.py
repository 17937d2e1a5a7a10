"""Every bad input gets one clear message; a killed run resumes to the same result; runs repeat exactly.
The CLI runs in this process (`here`), but for the run that is killed and the run it is compared with."""
import re, json, os, shutil, signal, subprocess, sys, time, zipfile

import numpy as np
import pandas as pd
import pytest

import phi_cls
from conftest import REPO, TINY_FLAGS, phi_cls_here as here
from phi_cls.data import load_champ
from phi_cls.model import ModelError


def _frames(n_train=12, n_test=6):
    dd = load_champ()
    cols = ["question", "solution", "label", "index"]
    return {"train": dd["train"].to_pandas()[cols].head(n_train), "test": dd["test"].to_pandas()[cols].head(n_test)}


def _one_csv(folder, frames, name="data.csv"):
    pd.concat([v.assign(split=k) for k, v in frames.items()]).to_csv(folder / name, index=False)
    return folder / name


def _bad_data(kind, tmp):
    f = _frames()
    if kind == "missing": return tmp / "nothing.csv"
    if kind == "format": (tmp / "data.txt").write_text("question,solution\n"); return tmp / "data.txt"
    if kind == "not_utf8": (tmp / "d.csv").write_bytes("question,solution,label,split\nr\xe9sum\xe9,x,0,train\n".encode("latin-1")); return tmp / "d.csv"
    if kind == "empty": (tmp / "d.jsonl").write_text(""); return tmp / "d.jsonl"
    if kind == "no_test": return _one_csv(tmp, {"train": f["train"]})
    if kind == "no_column": return _one_csv(tmp, {k: v.drop(columns="solution") for k, v in f.items()})
    if kind in ("nan_label", "str_label", "big_label"):
        value = {"nan_label": None, "str_label": "yes", "big_label": 2}[kind]
        f["train"]["label"] = f["train"]["label"].astype(object); f["train"].loc[3, "label"] = value
        return _one_csv(tmp, f)
    if kind == "empty_question": f["train"].loc[2, "question"] = ""; return _one_csv(tmp, f)
    if kind == "blank_solution": f["test"].loc[1, "solution"] = "   \t "; return _one_csv(tmp, f)
    if kind == "dup_index": f["train"].loc[5, "index"] = f["train"].loc[4, "index"]; return _one_csv(tmp, f)
    if kind == "leakage": f["test"].loc[0, "question"] = f["train"].loc[0, "question"]; return _one_csv(tmp, f)
    if kind == "one_class": f["train"]["label"] = 0; return _one_csv(tmp, f)
    raise ValueError(kind)


@pytest.mark.parametrize("kind, parts", [
    ("missing", ["nothing.csv", "no such file or folder"]),
    ("format", ["data.txt", "unknown file type '.txt'"]),
    ("not_utf8", ["d.csv", "is not UTF-8"]),
    ("empty", ["d.jsonl", "is empty"]),
    ("no_test", ["no split ['test']", "splits found: ['train']"]),
    ("no_column", ["no column 'solution'", "columns found: ['question', 'label', 'index', 'split']"]),
    ("nan_label", ["split 'train'", "column 'label'", "row 3 (nan)"]),
    ("str_label", ["column 'label'", "row 3 ('yes')"]),
    ("big_label", ["column 'label'", "row 3 (2)"]),
    ("empty_question", ["column 'question' is empty", "row 2"]),
    ("blank_solution", ["split 'test'", "column 'solution' is empty", "row 13"]),
    ("dup_index", ["column 'index' repeats in 2 rows", "row 4", "row 5"]),
    ("leakage", ["1 of 6 test rows", "leakage", "--allow-leakage"]),
    ("one_class", ["only label 0", "max_train_samples"]),
])
def test_bad_data(tmp_path, kind, parts):
    data = _bad_data(kind, tmp_path)
    proc = here("train", *TINY_FLAGS, "--mode", "probe", "--data", data, "--out", tmp_path / "run")
    assert proc.returncode == 2, proc.stderr[-2000:]
    assert "Traceback" not in proc.stderr and proc.stderr.count("error:") == 1
    for part in parts: assert part in proc.stderr, (part, proc.stderr)
    assert not (tmp_path / "run" / "metrics.json").exists()
    card = tmp_path / "run" / "run.json"
    if card.exists(): assert json.loads(card.read_text())["status"] == "failed"


def test_allow_leakage_trains_with_a_warning(tmp_path):
    data = _bad_data("leakage", tmp_path)
    proc = here("train", *TINY_FLAGS, "--mode", "probe", "--data", data, "--out", tmp_path / "run", "--allow-leakage")
    assert proc.returncode == 0 and "warning: 1 of 6 test rows" in proc.stdout
    assert (tmp_path / "run" / "metrics.json").exists()


def test_long_rows_warn_with_count(tmp_path):
    proc = here("train", "--mode", "probe", "--out", tmp_path / "run", *TINY_FLAGS[:-1], "--max-length", "96")
    assert proc.returncode == 0 and "12 of 12 rows are longer than max_length=96" in proc.stdout
    card = json.loads((tmp_path / "run" / "run.json").read_text())
    assert card["data"]["truncated"]["test"] == 12


@pytest.mark.parametrize("flags, message", [
    (["--mode", "fast"], "mode='fast' is not allowed"),
    (["--epochs", "-2"], "epochs=-2.0 must be a positive number"),
    (["--batch-size", "0"], "batch_size=0 must be a positive number"),
    (["--learning-rate", "0"], "learning_rate=0.0 must be a positive number"),
    (["--max-length", "5000"], "max_length=5000 is more than model 'tiny' can read (4096 positions)"),
    (["--device", "cuda"], "device='cuda' but this machine has no CUDA GPU"),
    (["--quantize", "8bit"], "quantize='8bit' is not allowed; use one of auto, 4bit, none"),  # 4bit runs on a CPU now
    (["--workers", "many"], "workers='many' is not allowed"),
    (["--workers", "0"], "workers=0 is not allowed"),
    (["--model", "nosuchorg/nosuchmodel"], "model 'nosuchorg/nosuchmodel' is not a local folder and not in the Hugging Face cache"),
    (["--model", str(REPO / "nbs")], "has no config.json, so it is not a transformers model"),
])
def test_bad_settings(tmp_path, flags, message):
    proc = here("train", "--out", tmp_path / "run", *TINY_FLAGS, *flags)
    assert proc.returncode == 2 and message in proc.stderr and "Traceback" not in proc.stderr, proc.stderr[-2000:]
    assert not (tmp_path / "run" / "metrics.json").exists()


def _copy_artifact(tiny_run, tmp_path, kind="lora"):
    dest = tmp_path / kind
    shutil.copytree(tiny_run / kind, dest)
    return dest


def _truncate(path, keep=50):
    path.write_bytes(path.read_bytes()[:keep])


@pytest.mark.parametrize("damage, message", [
    (lambda a: (a / "head.safetensors").unlink(), "head.safetensors is missing"),
    (lambda a: _truncate(a / "head.safetensors"), "incomplete or corrupted"),
    (lambda a: _truncate(a / "adapter" / "adapter_model.safetensors", 200), "could not be loaded"),
    (lambda a: (a / "adapter" / "adapter_model.safetensors").unlink(), "adapter/adapter_model.safetensors is missing"),
    (lambda a: (a / "classifier.json").write_text("{not json"), "classifier.json is corrupted"),
])
def test_damaged_artifact(tiny_run, tmp_path, damage, message):
    art = _copy_artifact(tiny_run, tmp_path)
    damage(art)
    with pytest.raises(ModelError, match=re.escape(message)): phi_cls.load_classifier(art)


def test_truncated_zip(tiny_run, tmp_path):
    shutil.copy(tiny_run / "artifacts.zip", tmp_path / "a.zip")
    _truncate(tmp_path / "a.zip", 1000)
    with pytest.raises(ModelError, match="not a readable zip file"): phi_cls.load_classifier(tmp_path / "a.zip")


def test_artifact_on_other_backbone(tiny_run):
    with pytest.raises(ModelError, match="trained on a different backbone"):
        phi_cls.load_classifier(tiny_run / "lora", base_model="embedded")


# 12 optimizer steps an epoch: the kill comes after epoch 1's checkpoint, with epochs 2-3 (about 60% of the run) still to go
RESUME_FLAGS = ["--mode", "lora", "--model", "tiny", "--max-train-samples", "96", "--max-eval-samples", "16", "--max-length", "256",
                "--epochs", "3", "--batch-size", "4", "--grad-accum", "2", "--no-progress", "--seed", "7"]


def _last_complete_checkpoint(run):
    from phi_cls.runs import last_checkpoint
    return last_checkpoint(run / "checkpoints" / "lora")


def test_kill_and_resume_matches_uninterrupted(tmp_path):
    assert here("train", "--out", tmp_path / "ref", *RESUME_FLAGS).returncode == 0
    run = tmp_path / "run"
    proc = subprocess.Popen([sys.executable, "-m", "phi_cls.cli", "train", "--out", str(run), *RESUME_FLAGS], cwd=REPO,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 300
    while proc.poll() is None and not _last_complete_checkpoint(run) and time.time() < deadline: time.sleep(0.02)
    assert proc.poll() is None, "the run ended before it could be killed after its first checkpoint"
    proc.send_signal(signal.SIGKILL); proc.wait()
    assert json.loads((run / "run.json").read_text())["status"] == "running"  # what a kill leaves
    assert not (run / "metrics.json").exists()
    first = _last_complete_checkpoint(run)
    resumed = here("train", "--out", run, *RESUME_FLAGS, "--resume")
    assert resumed.returncode == 0 and f"resuming from {first}" in resumed.stdout
    assert json.loads((run / "run.json").read_text())["status"] == "finished"
    a, b = pd.read_csv(tmp_path / "ref" / "lora_finetuned_predictions.csv"), pd.read_csv(run / "lora_finetuned_predictions.csv")
    assert a["index"].tolist() == b["index"].tolist()
    np.testing.assert_allclose(a["p(class=1)"], b["p(class=1)"], atol=1e-4)


def test_resume_refuses_other_settings(tmp_path, tiny_run):
    shutil.copytree(tiny_run, tmp_path / "run")
    proc = here("train", "--mode", "both", "--out", tmp_path / "run", *TINY_FLAGS, "--learning-rate", "0.001", "--resume")
    assert proc.returncode == 2 and "used other settings: learning_rate=0.0002 (now 0.001)" in proc.stderr


def test_resume_without_run(tmp_path):
    proc = here("train", "--out", tmp_path / "new", *TINY_FLAGS, "--resume")
    assert proc.returncode == 2 and "holds no run to resume" in proc.stderr


def test_same_seed_same_predictions(tiny_run, tmp_path):
    assert here("train", "--mode", "both", "--out", tmp_path / "again", *TINY_FLAGS).returncode == 0  # in this process, tiny_run in another
    for name in ("probe_baseline_predictions.csv", "lora_finetuned_predictions.csv"):
        assert (tiny_run / name).read_bytes() == (tmp_path / "again" / name).read_bytes(), name
    a, b = (json.loads((d / "run.json").read_text()) for d in (tiny_run, tmp_path / "again"))
    assert a["data"]["fingerprint"] == b["data"]["fingerprint"] and a["config"]["seed"] == b["config"]["seed"]
    assert a["versions"] == b["versions"] and a["resolved"] == b["resolved"]
