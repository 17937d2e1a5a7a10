"""benchmarks/gpu_check.py --dry-run: the GPU check's own code on the CPU with the tiny config, so it cannot rot before a GPU is lent."""
import json, subprocess, sys

import pytest

from conftest import REPO

pytest.importorskip("bitsandbytes", reason="bitsandbytes is in the [dev] extra: pip install -e '.[dev]'")


def test_gpu_check_dry_run(tmp_path):
    out = tmp_path / "gpu_check.json"
    proc = subprocess.run([sys.executable, "benchmarks/gpu_check.py", "--dry-run", "--out", str(out), "--train-rows", "4", "--test-rows", "2"], cwd=REPO, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr[-3000:]
    s = json.loads(out.read_text())
    o = s["phi_cls"]
    assert (o["resolved"]["quantize"], o["resolved"]["optim"], o["resolved"]["effective_batch"], o["max_length"]) == ("4bit", "paged_adamw_8bit", 32, 128)
    assert o["train_samples_per_s"] > 0 and o["train_tokens_per_s"] > 0 and o["predict_examples_per_s"] > 0
    assert s["reference"]["train_samples_per_s"] > 0 and s["reference"]["predict_examples_per_s"] > 0
    assert s["mfu"] is None and "dry run" in s["mfu_note"]  # no GPU peak on a CPU
    assert "| LoRA training, samples/s |" in proc.stdout and "MFU" in proc.stdout


def test_peaks_and_flops():
    sys.path.insert(0, str(REPO / "benchmarks"))
    from gpu_check import PHI4_MINI, linear_params, peak_tflops
    from transformers import Phi3Config
    assert (peak_tflops("NVIDIA H200"), peak_tflops("NVIDIA H100 80GB HBM3"), peak_tflops("NVIDIA A100-SXM4-40GB"), peak_tflops("NVIDIA L40S")) == (989, 989, 312, 362)
    assert peak_tflops("NVIDIA GeForce GTX 1080") is None and peak_tflops(None) is None
    assert abs(linear_params(Phi3Config(**PHI4_MINI)) / 1e9 - 3.22) < 0.01  # Phi-4-mini: 3.2B linear weights besides the embeddings
