"""benchmarks/gpu_check.py --dry-run --sweep: the GPU check's own code on the CPU with the tiny config (a few seconds), so it cannot rot
before a GPU is lent."""
import json, subprocess, sys

import pytest

from conftest import REPO

pytest.importorskip("bitsandbytes", reason="bitsandbytes is in the [dev] extra: pip install -e '.[dev]'")


def test_gpu_check_dry_run_sweep(tmp_path):
    out = tmp_path / "gpu_check.json"
    proc = subprocess.run([sys.executable, "benchmarks/gpu_check.py", "--dry-run", "--sweep", "--out", str(out), "--train-rows", "4",
                           "--test-rows", "2"], cwd=REPO, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr[-3000:]
    s = json.loads(out.read_text())
    o = s["phi_cls"]
    # the default is phi_cls's auto: on a CPU that is the unquantized backbone and AdamW, the recipe's effective batch
    assert (o["resolved"]["quantize"], o["resolved"]["optim"], o["resolved"]["effective_batch"], o["max_length"]) == ("none", "adamw_torch", 32, 128)
    assert o["train_samples_per_s"] > 0 and o["train_tokens_per_s"] > 0 and o["predict_examples_per_s"] > 0
    assert 20 < o["mean_tokens"] <= 128  # real gsm8k-pairs rows, cut at max_length
    assert s["reference"]["train_samples_per_s"] > 0 and s["reference"]["predict_examples_per_s"] > 0
    assert s["mfu"] is None and "dry run" in s["mfu_note"]  # no GPU peak on a CPU
    assert "| LoRA training, samples/s |" in proc.stdout and "MFU" in proc.stdout
    rows = {r["name"]: r for r in s["sweep"]}
    assert list(rows)[:2] == ["reference way (4-bit, checkpointing, 1 x 2)", "phi_cls default (auto)"] and len(rows) == 10
    assert not [r for r in rows.values() if "error" in r], [r["error"] for r in rows.values() if "error" in r]
    assert all(r["samples_per_s"] > 0 and r["timed_steps"] == 2 and 0 <= r["steady"] < 1 for r in rows.values())
    assert (rows["4-bit, 2 x 1"]["quantize"], rows["4-bit, 2 x 1"]["micro_batch_size"], rows["bf16, 1 x 2"]["accumulation_steps"]) == ("4bit", 2, 2)
    assert rows["4-bit, checkpointing, 1 x 2"]["gradient_checkpointing"] and not rows["default, no length grouping"]["group_by_length"]
    assert rows["phi_cls default (auto)"]["kernels"] == ["liger kernels: no CUDA device: skipped"]
    assert rows["default, torch.compile"]["kernels"][1] == "torch.compile: no CUDA device: skipped"
    assert "| LoRA training setting (same rows, same GPU) | samples/s |" in proc.stdout


def test_steady_rate():
    sys.path.insert(0, str(REPO / "benchmarks"))
    from gpu_check import steady_rate
    ends = [0.0, 5.0, 6.0, 7.0, 8.0, 9.0]  # a slow first step (warm-up), then 1 s per step of 32 rows
    r = steady_rate(ends, 1, 32)
    assert (r["samples_per_s"], r["steady"], r["timed_steps"]) == (32.0, 0.0, 4)
    assert steady_rate([0.0, 1.0, 2.0, 4.0, 6.0], 0, 32)["steady"] == 0.5  # the second half twice as slow


def test_peaks_and_flops():
    sys.path.insert(0, str(REPO / "benchmarks"))
    from gpu_check import PHI4_MINI, linear_params, peak_tflops
    from transformers import Phi3Config
    assert (peak_tflops("NVIDIA H200"), peak_tflops("NVIDIA H100 80GB HBM3"), peak_tflops("NVIDIA A100-SXM4-40GB"), peak_tflops("NVIDIA L40S")) == (989, 989, 312, 362)
    assert peak_tflops("NVIDIA GeForce GTX 1080") is None and peak_tflops(None) is None
    assert abs(linear_params(Phi3Config(**PHI4_MINI)) / 1e9 - 3.22) < 0.01  # Phi-4-mini: 3.2B linear weights besides the embeddings
