"""4-bit NF4 (bitsandbytes' CPU backend) on the frozen-backbone paths, LoRA through 4-bit layers, and 8-bit optimizers on a CPU.

Tolerances measured on this project's CPU (bitsandbytes 0.50.2), with some margin in the asserts:
- tiny Phi-3, probe trained on 4-bit features vs on unquantized ones (12 test rows): max |dp| 2.0e-4;
- embedded SmolLM2-135M, the unquantized probe's head on the 4-bit backbone vs on the unquantized one (4 rows): max |dp| 0.005.
"""
import json

import numpy as np
import pandas as pd
import pytest
import torch
from safetensors.torch import load_file

import phi_cls
from phi_cls.data import load_champ, training_splits
from phi_cls.train import ConfigError, TrainConfig, run
from conftest import phi_cls as cli

pytest.importorskip("bitsandbytes", reason="bitsandbytes is in the [dev] extra: pip install -e '.[dev]'")

SMALL = dict(max_train_samples=24, max_eval_samples=12, max_length=128, batch_size=4, grad_accum=2, epochs=1, progress=False, device="cpu")
TINY_TOL, EMBEDDED_TOL = 0.005, 0.05


def _probs(path):
    return pd.read_csv(path)[["p(class=0)", "p(class=1)"]].to_numpy()


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    "The tiny model: an unquantized probe, and probe + LoRA on the 4-bit backbone."
    root = tmp_path_factory.mktemp("quant")
    run(TrainConfig(mode="probe", model="tiny", output_dir=str(root / "plain"), quantize="none", **SMALL))
    run(TrainConfig(mode="both", model="tiny", output_dir=str(root / "q4"), quantize="4bit", **SMALL))
    return root


@pytest.fixture(scope="module")
def test_rows():
    return training_splits(load_champ(), max_train_samples=24, max_eval_samples=12, seed=42)[2].to_pandas()


def test_4bit_probe_close_to_unquantized(runs):
    diff = np.abs(_probs(runs / "q4" / "probe_baseline_predictions.csv") - _probs(runs / "plain" / "probe_baseline_predictions.csv")).max()
    print(f"tiny: max |p(4-bit probe) - p(unquantized probe)| = {diff:.2e}")
    assert diff < TINY_TOL


def test_run_card_records_cpu_4bit(runs):
    card = json.loads((runs / "q4" / "run.json").read_text())
    resolved = card["resolved"]
    assert (card["status"], resolved["quantize"], resolved["device"]) == ("finished", "4bit", "cpu")
    assert "test / low-memory mode" in resolved["note"] and resolved["bitsandbytes"]
    assert json.loads((runs / "q4" / "config.json").read_text())["resolved"]["note"] == resolved["note"]
    assert json.loads((runs / "q4" / "probe" / "classifier.json").read_text())["quantize"] == "4bit"
    assert json.loads((runs / "plain" / "run.json").read_text())["resolved"]["note"] is None


@pytest.mark.parametrize("kind", ["probe", "lora"])
def test_head_is_fp32_and_lora_trained(runs, kind):
    head = load_file(runs / "q4" / kind / "head.safetensors")
    assert {k: v.dtype for k, v in head.items()} == {"weight": torch.float32, "bias": torch.float32}
    if kind == "lora":
        adapter = load_file(runs / "q4" / "lora" / "adapter" / "adapter_model.safetensors")
        lora_b = {k: v for k, v in adapter.items() if "lora_B" in k}
        assert lora_b and all(v.abs().max() > 0 for v in lora_b.values())  # B starts at zero: it trained through the 4-bit layers


@pytest.mark.parametrize("kind", ["probe", "lora"])
def test_4bit_artifact_reproduces_csv(runs, test_rows, kind):
    clf = phi_cls.load_classifier(runs / "q4" / kind, device="cpu", quantize="4bit")
    assert clf.clf.backbone.is_loaded_in_4bit if kind == "probe" else clf.clf.backbone.base_model.model.is_loaded_in_4bit
    assert clf.clf.head.weight.dtype == torch.float32
    saved = pd.read_csv(runs / "q4" / f"{'probe_baseline' if kind == 'probe' else 'lora_finetuned'}_predictions.csv")
    assert saved["index"].tolist() == test_rows["index"].tolist()
    # 1e-4: a reloaded backbone predicts through bitsandbytes' CPU inference layout (bf16 block scales), the run through the layout LoRA trained in
    np.testing.assert_allclose(clf.predict_proba(test_rows), saved[["p(class=0)", "p(class=1)"]].to_numpy(), atol=1e-5 if kind == "probe" else 1e-4)


def test_cli_predict_4bit(runs, tmp_path, test_rows):
    test_rows.to_csv(tmp_path / "in.csv", index=False)
    proc = cli("predict", "--model", runs / "q4", "--kind", "probe", "--input", tmp_path / "in.csv", "--output", tmp_path / "out.csv",
               "--device", "cpu", "--quantize", "4bit", "--no-progress")
    assert proc.stderr.count("test / low-memory mode") == 1
    np.testing.assert_allclose(pd.read_csv(tmp_path / "out.csv")[["p(class=0)", "p(class=1)"]].to_numpy(),
                               _probs(runs / "q4" / "probe_baseline_predictions.csv"), atol=1e-5)


def test_embedded_4bit_probe_close(tmp_path):
    "The unquantized probe's head on the 4-bit embedded backbone gives nearly the unquantized probabilities, over 4 rows."
    out = tmp_path / "run"
    run(TrainConfig(mode="probe", model="embedded", output_dir=str(out), max_train_samples=8, max_eval_samples=4, max_length=128,
                    batch_size=4, grad_accum=1, epochs=1, progress=False, device="cpu", precision="fp32"))
    rows = training_splits(load_champ(), max_train_samples=8, max_eval_samples=4, seed=42)[2].to_pandas()
    got = phi_cls.load_classifier(out / "probe", device="cpu", quantize="4bit", precision="fp32").predict_proba(rows)
    diff = np.abs(got - _probs(out / "probe_baseline_predictions.csv")).max()
    print(f"embedded: max |p(4-bit) - p(unquantized)| over 4 rows = {diff:.3f}")
    assert diff < EMBEDDED_TOL


def test_lora_refused_up_front_when_4bit_gradients_are_wrong(tmp_path, monkeypatch):
    "With a bitsandbytes whose CPU backward is wrong, mode=both stops at config resolution: no probe runs, no file is written."
    monkeypatch.setattr("phi_cls.train.kbit_gradients_ok", lambda *a: False)
    with pytest.raises(ConfigError, match="wrong gradients through 4-bit layers.*quantize='none'.*CUDA GPU"):
        run(TrainConfig(mode="both", model="tiny", output_dir=str(tmp_path / "run"), quantize="4bit", **SMALL))
    assert not (tmp_path / "run").exists()
    run_probe = TrainConfig(mode="probe", model="tiny", output_dir=str(tmp_path / "probe"), quantize="4bit", **SMALL)
    assert phi_cls.train.resolve(run_probe)["quantize"] == "4bit"  # the probe alone is still allowed


def test_8bit_optimizer_probe_run(tmp_path):
    "bitsandbytes' paged 8-bit AdamW runs on a CPU (without paging) through the Trainer."
    out = tmp_path / "run"
    metrics = run(TrainConfig(mode="probe", model="tiny", output_dir=str(out), optim="paged_adamw_8bit", **SMALL))
    card = json.loads((out / "run.json").read_text())
    assert card["resolved"]["optim"] == "paged_adamw_8bit" and card["resolved"]["bitsandbytes"]
    assert 0 <= metrics["probe"]["accuracy"] <= 1 and len(pd.read_csv(out / "probe_baseline_predictions.csv")) == 12


def test_8bit_adamw_matches_torch_on_cpu():
    "On tensors of 4096+ values (bitsandbytes' threshold for 8-bit state) AdamW8bit keeps uint8 state and tracks torch's AdamW."
    import bitsandbytes as bnb
    torch.manual_seed(0)
    w = torch.nn.Parameter(torch.randn(4096, 16)); ref = torch.nn.Parameter(w.detach().clone()); w0 = w.detach().clone()
    opt, ropt = bnb.optim.AdamW8bit([w], lr=1e-3), torch.optim.AdamW([ref], lr=1e-3, weight_decay=0.01)
    for _ in range(5):
        g = torch.randn_like(w); w.grad, ref.grad = g.clone(), g.clone(); opt.step(); ropt.step()
    assert opt.state[w]["state1"].dtype == torch.uint8
    assert ((w - ref).norm() / (ref - w0).norm()).item() < 0.05
