"""The benchmark runs and writes complete JSON (no timing assertions); torchrun with 2 processes gives one correct run folder."""
import json, shutil, subprocess, sys
from pathlib import Path

import numpy as np
import pandas as pd

import phi_cls
from conftest import REPO
from phi_cls.data import load_champ, training_splits

KEYS = {"probe_speedup", "lora_speedup", "predict_speedup", "peak_rss_ratio", "accuracy_ours", "accuracy_reference", "cpu_kind",
        "roofline_fraction", "matmul_gflops", "predict_gflops", "targets_met", "phases", "predict_levers"}


def test_benchmark_tiny(tmp_path):
    out = tmp_path / "bench.json"
    proc = subprocess.run([sys.executable, "benchmarks/bench.py", "--quick", "--model", "tiny", "--n-train", "4", "--n-test", "2",
                           "--lora-rows", "4", "--max-length", "96", "--out", str(out)], capture_output=True, text=True, cwd=REPO)
    assert proc.returncode == 0, proc.stderr[-3000:]
    result = json.loads(out.read_text())
    assert KEYS <= set(result), KEYS - set(result)
    from phi_cls.hardware import cpu_kind
    assert result["cpu_kind"] == cpu_kind()  # the bench's processes see this machine as the library does
    for phase in ("ref_probe", "ours_probe", "ours_probe_workers", "ref_lora", "ours_lora", "ref_predict", "ours_predict", "ours_predict_workers",
                  "ours_predict_b8", "ours_predict_b8_plain_malloc"):
        assert result["phases"][phase]["seconds"] > 0 and result["phases"][phase]["peak_rss_mb"] > 0
    # the lever phases really differ in what they say they measure
    assert [result["phases"][p]["malloc"] for p in ("ours_predict", "ours_predict_b8", "ours_predict_b8_plain_malloc")] == ["tuned", "tuned", "default"]
    assert [result["phases"][p]["batch_size"] for p in ("ours_predict", "ours_predict_b8")] == [2, 8]
    # workers: the same numbers as one process (a tiny model: auto keeps the probe in one process; prediction uses every core)
    assert result["workers"]["predict_same_logits"] and result["workers"]["probe_same_probs"], result["workers"]
    for key in ("probe_speedup", "lora_speedup", "predict_speedup", "peak_rss_ratio", "roofline_fraction", "probe_speedup_workers", "predict_speedup_workers"):
        assert np.isfinite(result[key]) and result[key] > 0
    assert "probe, 3 epochs end to end" in proc.stdout and "roofline" in proc.stdout and "prediction levers" in proc.stdout


def test_benchmark_emulated_avx2_phase():
    "--emulate-avx2 holds the phase processes to AVX2 kernels: phi_cls sees an AVX2 CPU and picks fp32 there."
    sys.path.insert(0, str(REPO / "benchmarks"))
    import bench
    result = bench.run_phase("ours_predict", ["--quick", "--model", "tiny", "--n-test", "2", "--max-length", "96"], emulate_avx2=True)
    assert (result["cpu_kind"], result["precision"]) == ("avx2", "fp32")


def test_torchrun_two_processes(tmp_path):
    torchrun = shutil.which("torchrun", path=str(Path(sys.executable).parent))
    out = tmp_path / "ddp"
    proc = subprocess.run([torchrun, "--nproc_per_node", "2", "-m", "phi_cls.cli", "train", "--model", "tiny", "--data", "champ", "--out", str(out),
                           "--max-train-samples", "32", "--max-eval-samples", "13", "--max-length", "128", "--epochs", "2", "--no-progress"],
                          capture_output=True, text=True, cwd=REPO)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert proc.stdout.count("lora: test accuracy") == 1  # only the first process reports and writes
    card = json.loads((out / "run.json").read_text())
    assert card["status"] == "finished" and card["resolved"]["processes"] == 2
    assert card["resolved"]["micro_batch_size"] * card["resolved"]["accumulation_steps"] * 2 == 32
    test = training_splits(load_champ(), max_train_samples=32, max_eval_samples=13, seed=42)[2].to_pandas()
    metrics = json.loads((out / "metrics.json").read_text())
    for mode, csv in (("probe", "probe_baseline_predictions.csv"), ("lora", "lora_finetuned_predictions.csv")):
        preds = pd.read_csv(out / csv)
        assert preds["index"].tolist() == test["index"].tolist()  # every test row once, in order, despite sharding
        assert metrics[mode]["n"] == 13 and metrics[mode]["accuracy"] == ((preds["p(class=1)"] >= metrics[mode]["threshold"]) == preds["true_label"]).mean()
        np.testing.assert_allclose(phi_cls.load_classifier(out / mode).predict_proba(test)[:, 1], preds["p(class=1)"], atol=1e-5)
