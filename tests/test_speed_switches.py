"""GPU speed settings checked on the CPU: the memory-aware `auto` through `resolve` (with a faked GPU), and parity of
each speed switch (the same losses, the same predictions) where the CPU can run it (Liger and torch.compile: CUDA)."""
import json, tempfile
from pathlib import Path
from unittest import mock

import pytest
import torch

from phi_cls.config import TrainConfig
from phi_cls.hardware import GiB

PHI4_MINI = dict(model_type="phi3", architectures=["Phi3ForCausalLM"], vocab_size=200064, hidden_size=3072,
                 intermediate_size=8192, num_hidden_layers=32, num_attention_heads=24, num_key_value_heads=8,
                 partial_rotary_factor=0.75, tie_word_embeddings=True, max_position_embeddings=131072)
CUDA = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU (Triton kernels, torch.compile)")


@pytest.fixture(scope="module")
def phi4_config_dir():
    "A folder holding only Phi-4-mini's config.json: what the memory plan reads (no weights)."
    with tempfile.TemporaryDirectory() as d:
        (Path(d) / "config.json").write_text(json.dumps(PHI4_MINI))
        yield d


def _resolve_on(gpu: str, free_gib: float, **cfg):
    "`resolve` as on a CUDA GPU named `gpu` with `free_gib` free (device, name, bf16 support and memory faked)."
    import phi_cls.trainer as train
    with mock.patch.object(train, "resolve_device", lambda d: torch.device("cuda", 0)), \
         mock.patch.object(train, "resolve_precision", lambda p, d: "bf16" if p == "auto" else p), \
         mock.patch("torch.cuda.get_device_name", lambda d=None: gpu), \
         mock.patch("torch.cuda.mem_get_info", lambda d=None: (int(free_gib * GiB), int(free_gib * GiB))):
        return train.resolve(TrainConfig(**cfg))


def test_memory_plan_on_a_t4_and_an_h200(phi4_config_dir):
    t4 = _resolve_on("Tesla T4", 14.6, model=phi4_config_dir)
    assert (t4.quantize, t4.gradient_checkpointing, t4.micro_batch_size, t4.accumulation_steps, t4.optim) == \
        ("4bit", True, 8, 4, "paged_adamw_8bit")
    assert t4.memory.startswith("4-bit NF4: bf16's 7.1 GiB of weights") and "14.6 GiB free" in t4.memory
    h200 = _resolve_on("NVIDIA H200", 139.3, model=phi4_config_dir)
    assert (h200.quantize, h200.gradient_checkpointing, h200.micro_batch_size, h200.accumulation_steps, h200.optim) == \
        ("none", False, 32, 1, "adamw_torch")
    assert h200.memory.startswith("bf16: 7.1 GiB of weights") and h200.eval_batch_size == 64
    # explicit settings win over the plan
    asked = _resolve_on("NVIDIA H200", 139.3, model=phi4_config_dir, quantize="4bit", micro_batch_size=8,
                        gradient_checkpointing=True, eval_batch_size=8)
    assert (asked.quantize, asked.micro_batch_size, asked.gradient_checkpointing, asked.eval_batch_size) == \
        ("4bit", 8, True, 8)


def test_cpu_resolution_is_unchanged():
    from phi_cls.train import _setup_line
    from phi_cls.trainer import resolve
    r = resolve(TrainConfig(device="cpu"))
    assert (r.quantize, r.micro_batch_size, r.accumulation_steps, r.eval_batch_size, r.gradient_checkpointing,
            r.memory) == ("none", 2, 16, 2, False, None)
    assert "memory" not in _setup_line(TrainConfig(device="cpu"), r)
    assert resolve(TrainConfig(device="cpu", gradient_checkpointing=True)).gradient_checkpointing


def _step_losses(by_length: bool, **extra) -> list:
    "Mean loss of each optimizer step of a tiny LoRA run (32 rows, effective batch 32: each step sees every row)."
    from phi_cls.model import load_backbone, load_tokenizer
    from phi_cls.train import lora_trainer, prepare_data
    from phi_cls.trainer import resolve
    cfg = TrainConfig(model="tiny", data="gsm8k-pairs", max_train_samples=32, max_eval_samples=4, max_length=384,
                      epochs=3, optim="sgd", learning_rate=0.5, lr_scheduler="constant", warmup_ratio=0.0,
                      lora_dropout=0.0, keep_validation=False, progress=False, device="cpu",
                      group_by_length=by_length, logging_steps=1, class_weight="none", **extra)
    tok = load_tokenizer(cfg.model)
    data, _, _ = prepare_data(cfg, tok)
    assert len(set(data["train"]["length"])) > 8  # rows of many lengths: grouping them saves padding
    res = resolve(cfg)
    with tempfile.TemporaryDirectory() as out:
        trainer = lora_trainer(cfg, load_backbone(cfg.model, "cpu"), tok, data, Path(out), res)
        trainer.args.save_strategy = "no"
        trainer.train()
    return [e["step_loss"] for e in trainer.training_log() if "step_loss" in e]


def test_group_by_length_parity():
    # Each optimizer step averages the same 32 rows in either order, so grouping by length changes only the padding
    # computed: the losses of 3 steps agree to 1e-5 (float32 sums in another order). SGD with a large step moves the
    # loss (Adam's first steps follow the gradient's sign, so rounding noise would decide them); class weights are off
    # because a weighted mean per micro batch depends on which rows share it.
    grouped, shuffled = _step_losses(True), _step_losses(False)
    assert len(grouped) == 3
    assert grouped == pytest.approx(shuffled, abs=1e-5)


def test_length_sorted_prediction_keeps_input_order():
    # Prediction runs rows in length-sorted batches (phi_cls.model.length_batches) and puts them back in input order:
    # the same logits, in the same order, as batches taken in input order.
    import phi_cls.model as model
    from phi_cls.data import PromptEncoder
    from datasets import Dataset
    tok = model.load_tokenizer("tiny")
    clf = model.PhiClassifier(model.load_backbone("tiny", "cpu"))
    qs = [f"What is {i} + {i}?" for i in range(9)]
    sols = [("Add them. " * (1 + 7 * i % 5)) + f"So the answer is {2 * i}." for i in range(9)]
    ds = Dataset.from_dict(PromptEncoder(tok, 128)(qs, sols))
    assert len(set(ds["length"])) > 3  # rows of different lengths, not in length order
    sorted_logits = model.predict_logits(clf, ds, tok.pad_token_id, batch_size=4, progress=False)
    in_order = lambda lengths, bs: [list(range(i, min(i + bs, len(lengths)))) for i in range(0, len(lengths), bs)]
    with mock.patch.object(model, "length_batches", in_order):
        unsorted_logits = model.predict_logits(clf, ds, tok.pad_token_id, batch_size=4, progress=False)
    one_by_one = model.predict_logits(clf, ds, tok.pad_token_id, batch_size=1, progress=False)
    assert torch.allclose(sorted_logits, unsorted_logits, atol=1e-5)
    assert torch.allclose(sorted_logits, one_by_one, atol=1e-5)


@CUDA
def test_liger_parity():
    # Liger's fused RMSNorm and SwiGLU against transformers' own layers: step losses agree to 2e-2 in bf16.
    pytest.importorskip("liger_kernel", reason="liger-kernel is not installed (the [gpu] extra)")
    assert _step_losses(True, device="cuda", liger=True) == pytest.approx(
        _step_losses(True, device="cuda", liger=False), abs=2e-2)


@CUDA
def test_compile_parity():
    # torch.compile of each decoder layer: the same step losses to 2e-2 in bf16.
    assert _step_losses(True, device="cuda", compile=True) == pytest.approx(
        _step_losses(True, device="cuda", compile=False), abs=2e-2)
