"""`phi-cls train` end to end on the tiny model: the run folder, its files, and how bad input is answered."""
import json, zipfile

import numpy as np
import pandas as pd
import pytest
from safetensors import safe_open

from conftest import TINY_FLAGS, phi_cls, phi_cls_here

COLUMNS = ["index", "true_label", "p(class=0)", "p(class=1)"]
CSV = {"probe": "probe_baseline_predictions.csv", "lora": "lora_finetuned_predictions.csv"}


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
    preds = pd.read_csv(tiny_run / CSV[kind])
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
    from phi_cls.data import load_champ
    test_index = set(load_champ()["test"]["index"])
    assert set(pd.read_csv(tiny_run / CSV["lora"])["index"]) <= test_index


def test_config_records_what_ran(tiny_run):
    cfg = json.loads((tiny_run / "config.json").read_text())
    assert cfg["config"]["mode"] == "both" and cfg["config"]["learning_rate"] == 2e-4 and cfg["config"]["lora_r"] == 16
    assert cfg["resolved"]["device"] == "cpu" and cfg["resolved"]["quantize"] == "none" and cfg["resolved"]["optim"] == "adamw_torch"
    assert cfg["resolved"]["precision"] in ("bf16", "fp32") and cfg["resolved"]["cpu_kind"]
    assert {"torch", "transformers", "peft", "phi_cls"} <= set(cfg["versions"])


def test_zip_holds_artifacts_not_checkpoints(tiny_run):
    names = set(zipfile.ZipFile(tiny_run / "artifacts.zip").namelist())
    assert {"metrics.json", "config.json", CSV["probe"], CSV["lora"], "probe/head.safetensors",
            "lora/adapter/adapter_model.safetensors", "lora/classifier.json"} <= names
    assert not any(n.startswith("checkpoints") for n in names)


def test_artifacts_hold_no_backbone_copy(tiny_run):
    "Only the head and the adapter are saved: no model.safetensors, no pickles, nothing near the backbone's size."
    assert not list(tiny_run.glob("probe/model*")) and not list(tiny_run.glob("lora/model*"))
    assert not list(tiny_run.rglob("*.bin")) or all("checkpoints" in str(p) for p in tiny_run.rglob("*.bin"))
    with safe_open(tiny_run / "lora" / "adapter" / "adapter_model.safetensors", "pt") as f:
        keys = list(f.keys())
    assert keys and all("lora_" in k for k in keys), keys[:5]
    assert not any("head" in k for k in keys)  # LoRA never wraps the head (peft#2027)


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


@pytest.mark.parametrize("flags, message", [
    (["--mode", "lorra"], "mode='lorra' is not allowed; use one of probe, lora, both"),
    (["--epochs", "0"], "epochs=0.0 must be a positive number"),
    (["--data", "no/such/data.csv"], "data='no/such/data.csv': no such file"),
    (["--model", "./no-such-model"], "model folder './no-such-model' does not exist"),
    (["--optim", "lion"], "optim='lion' is not allowed"),  # 8-bit optimizers run on a CPU with bitsandbytes
    (["--max-length", "20"], "max_length=20 is too small"),
])
def test_bad_input_is_one_clear_line(tmp_path, flags, message):
    "In this process (--quantize 8bit: test_reliability.py::test_bad_settings); the real command's answer: the next test."
    proc = phi_cls_here("train", "--out", tmp_path / "run", *TINY_FLAGS, *flags)
    assert proc.returncode == 2
    assert message in proc.stderr and "Traceback" not in proc.stderr, proc.stderr[-2000:]
    assert not (tmp_path / "run" / "metrics.json").exists()


def test_bad_data_names_file_split_column_row(tmp_path):
    bad = pd.DataFrame({"question": ["a", "b", "c"], "solution": ["x", "y", "z"], "label": [0, 1, 7], "split": ["train", "test", "train"]})
    bad.to_csv(tmp_path / "bad.csv", index=False)
    proc = phi_cls_here("train", *TINY_FLAGS, "--data", tmp_path / "bad.csv", "--out", tmp_path / "run")
    assert proc.returncode == 2
    for part in ("bad.csv", "split 'train'", "column 'label'", "row 2 (7)"):
        assert part in proc.stderr, proc.stderr


def test_real_command_answers_bad_input_on_stderr(tmp_path):
    "`python -m phi_cls.cli train` itself: exit code 2, the message on stderr only, no traceback, no run folder."
    proc = phi_cls("train", "--out", tmp_path / "run", *TINY_FLAGS, "--mode", "lorra", check=False)
    assert proc.returncode == 2 and "mode='lorra' is not allowed; use one of probe, lora, both" in proc.stderr, proc.stderr[-2000:]
    assert "lorra" not in proc.stdout and "Traceback" not in proc.stderr and not (tmp_path / "run").exists()


def test_debug_shows_traceback(tmp_path):
    proc = phi_cls("train", "--mode", "nope", "--debug", check=False)
    assert proc.returncode != 0 and "Traceback" in proc.stderr
