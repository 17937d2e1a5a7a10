"""4-bit NF4 (bitsandbytes' CPU backend) on the frozen-backbone paths, LoRA through 4-bit layers, and 8-bit optimizers
on a CPU.

One tiny run (probe + LoRA on the 4-bit backbone, paged_adamw_8bit) is shared by most checks. Tolerances measured on
this project's CPU (bitsandbytes 0.50.2), with margin in the asserts:
- tiny Phi-3, the 4-bit probe's head on the unquantized backbone vs on the 4-bit one (4 test rows): max |dp| 4.5e-4;
- embedded SmolLM2-135M, pooled last-token states, 4-bit vs unquantized (3 rows, 64 tokens): cosine 0.935 to 0.975.
  (The differences are about as large as those between rows: a head that separates 3 rows moves by up to |dp| 0.2-0.9.)
"""
import json

import numpy as np
import pandas as pd
import pytest
import torch
from safetensors.torch import load_file

import phi_cls
from phi_cls.data import load_champ, training_splits
from phi_cls.train import ConfigError, TrainConfig, resolve, run
from conftest import PRED_FILES, SLOW, phi_cls as cli

pytest.importorskip("bitsandbytes", reason="bitsandbytes is in the [dev] extra: pip install -e '.[dev]'")

ROWS = dict(max_train_samples=8, max_eval_samples=4)
SMALL = dict(**ROWS, max_length=128, batch_size=4, grad_accum=1, epochs=1, progress=False, device="cpu")
TINY_TOL, EMBEDDED_COS = 0.005, 0.9


def _probs(path):
    return pd.read_csv(path)[["p(class=0)", "p(class=1)"]].to_numpy()


@pytest.fixture(scope="module")
def q4(tmp_path_factory):
    """Probe + LoRA on the tiny model's 4-bit backbone, with bitsandbytes' paged 8-bit AdamW (no paging on a CPU):
    2 steps each."""
    out = tmp_path_factory.mktemp("quant") / "q4"
    metrics = run(TrainConfig(mode="both", model="tiny", data="champ", output_dir=str(out), quantize="4bit",
                              optim="paged_adamw_8bit", **SMALL))
    assert set(metrics) >= {"probe", "lora"}
    return out


@pytest.fixture(scope="module")
def test_rows():
    return training_splits(load_champ(), seed=42, **ROWS)[2].to_pandas()


def test_run_card_records_cpu_4bit_and_8bit_optimizer(q4):
    card = json.loads((q4 / "run.json").read_text())
    res = card["resolved"]
    found = (card["status"], res["quantize"], res["device"], res["optim"])
    assert found == ("finished", "4bit", "cpu", "paged_adamw_8bit")
    assert "test / low-memory mode" in res["note"] and res["bitsandbytes"] == phi_cls.hardware.bitsandbytes_version()
    resolved = json.loads((q4 / "config.json").read_text())["resolved"]
    assert {k: v for k, v in res.items() if k not in ("inference_workers", "kernels")} == resolved  # + what ran
    assert list(resolved)[-4:] == ["bitsandbytes", "note", "gradient_checkpointing", "memory"]  # new keys last
    assert all(json.loads((q4 / k / "classifier.json").read_text())["quantize"] == "4bit" for k in PRED_FILES)
    assert resolve(TrainConfig(model="tiny", quantize="none", **SMALL)).note is None


@pytest.mark.parametrize("kind", ["probe", "lora"])
def test_head_is_fp32_and_lora_trained(q4, kind):
    head = load_file(q4 / kind / "head.safetensors")
    assert {k: v.dtype for k, v in head.items()} == {"weight": torch.float32}  # bias-free, float32
    if kind == "lora":
        adapter = load_file(q4 / "lora" / "adapter" / "adapter_model.safetensors")
        lora_b = {k: v for k, v in adapter.items() if "lora_B" in k}
        assert any("qkv_proj" in k for k in lora_b) and any("gate_up_proj" in k for k in lora_b)
        assert all(v.abs().max() > 0 for v in lora_b.values())  # B starts at zero: it trained through the 4-bit layers


@pytest.mark.parametrize("kind", ["probe", "lora"])
def test_4bit_artifact_reloads_4bit_by_default(q4, test_rows, kind):
    "quantize='auto' follows the artifact's recorded 4-bit, also on a CPU: its CSV comes back without asking for 4bit."
    clf = phi_cls.load_classifier(q4 / kind, device="cpu")
    backbone = clf.clf.backbone if kind == "probe" else clf.clf.backbone.base_model.model
    assert backbone.is_loaded_in_4bit and clf.clf.head.weight.dtype == torch.float32
    saved = pd.read_csv(q4 / PRED_FILES[kind])
    assert saved["index"].tolist() == test_rows["index"].tolist()
    # LoRA: a reloaded backbone predicts through bitsandbytes' CPU inference layout (bf16 block scales), the run through
    # the layout LoRA trained in; the temperature fitted on validation then scales that difference (measured 5e-4)
    np.testing.assert_allclose(clf.predict_proba(test_rows), _probs(q4 / PRED_FILES[kind]),
                               atol=1e-5 if kind == "probe" else 1e-3)


def test_4bit_probe_close_to_unquantized(q4, test_rows):
    """The 4-bit probe's head on the unquantized tiny backbone (quantize='none' overrides the artifact) gives nearly the
    same probabilities."""
    clf = phi_cls.load_classifier(q4 / "probe", device="cpu", quantize="none")
    assert not getattr(clf.clf.backbone, "is_loaded_in_4bit", False)
    plain, quant = clf.predict_proba(test_rows), _probs(q4 / PRED_FILES["probe"])
    diff = np.abs(plain - quant).max()
    print(f"tiny: max |p(unquantized) - p(4-bit)| = {diff:.2e}")
    assert 0 < diff < TINY_TOL  # close, and not identical: the CSV really came from the 4-bit backbone


def test_cli_predict_4bit_artifact_without_flag(q4, tmp_path, test_rows):
    """phi-cls predict on a 4-bit artifact, no --quantize: loads 4-bit (says once that it is a test mode) and reproduces
    the CSV."""
    test_rows.to_csv(tmp_path / "in.csv", index=False)
    proc = cli("predict", "--model", q4, "--kind", "probe", "--input", tmp_path / "in.csv", "--output",
               tmp_path / "out.csv", "--device", "cpu", "--no-progress")
    assert proc.stderr.count("test / low-memory mode") == 1
    np.testing.assert_allclose(_probs(tmp_path / "out.csv"), _probs(q4 / PRED_FILES["probe"]), atol=1e-5)


@SLOW
def test_embedded_4bit_close():
    """SmolLM2-135M: the pooled last-token states (what the head reads) of the 4-bit backbone vs the unquantized one,
    same 3 rows."""
    from phi_cls.data import PromptEncoder, tokenize
    from phi_cls.model import EMBEDDED, PhiClassifier, extract_features, load_backbone, load_tokenizer
    tok = load_tokenizer(EMBEDDED)
    ds = tokenize(load_champ()["test"].select(range(3)), PromptEncoder(tok, max_length=64))
    feats = {q: extract_features(PhiClassifier(load_backbone(EMBEDDED, "cpu", q, "fp32")), ds, tok.pad_token_id,
                                 progress=False) for q in ("none", "4bit")}
    cos = torch.nn.functional.cosine_similarity(feats["none"], feats["4bit"])
    print(f"embedded: pooled states, 4-bit vs unquantized: cosine {cos.numpy().round(3)}")
    assert cos.min() > EMBEDDED_COS and not torch.equal(feats["none"], feats["4bit"])


def test_lora_refused_up_front_when_4bit_gradients_are_wrong(tmp_path, monkeypatch):
    """With a bitsandbytes whose CPU backward is wrong, mode=both stops at config resolution: no probe runs, no file is
    written."""
    monkeypatch.setattr("phi_cls.trainer.kbit_gradients_ok", lambda *a: False)
    with pytest.raises(ConfigError, match="wrong gradients through 4-bit layers.*quantize='none'.*CUDA GPU"):
        run(TrainConfig(mode="both", model="tiny", output_dir=str(tmp_path / "run"), quantize="4bit", **SMALL))
    assert not (tmp_path / "run").exists()
    probe = TrainConfig(mode="probe", model="tiny", output_dir=str(tmp_path / "probe"), quantize="4bit", **SMALL)
    assert resolve(probe).quantize == "4bit"  # the probe alone is still allowed


def test_8bit_adamw_matches_torch_on_cpu():
    """On tensors of 4096+ values (bitsandbytes' threshold for 8-bit state) AdamW8bit keeps uint8 state and tracks
    torch's AdamW."""
    import bitsandbytes as bnb
    torch.manual_seed(0)
    w = torch.nn.Parameter(torch.randn(4096, 16)); ref = torch.nn.Parameter(w.detach().clone()); w0 = w.detach().clone()
    opt, ropt = bnb.optim.AdamW8bit([w], lr=1e-3), torch.optim.AdamW([ref], lr=1e-3, weight_decay=0.01)
    for _ in range(5):
        g = torch.randn_like(w); w.grad, ref.grad = g.clone(), g.clone(); opt.step(); ropt.step()
    assert opt.state[w]["state1"].dtype == torch.uint8
    assert ((w - ref).norm() / (ref - w0).norm()).item() < 0.05
