"""The scripts in benchmarks/: bench.py runs and writes complete JSON (no timing assertions), gpu_check.py --dry-run
runs the GPU check's own code on the CPU with the tiny config (so it cannot rot before a GPU is lent), and quality.py
(make quality) builds its table from a run's metrics.json, without training anything."""
import importlib.util, json, subprocess, sys

import numpy as np
import pandas as pd
import pytest

from conftest import REPO, SLOW
from phi_cls.hardware import cpu_kind

spec = importlib.util.spec_from_file_location("quality", REPO / "benchmarks" / "quality.py")
quality = importlib.util.module_from_spec(spec); spec.loader.exec_module(quality)
needs_bitsandbytes = pytest.mark.skipif(importlib.util.find_spec("bitsandbytes") is None,
                                        reason="bitsandbytes is in the [dev] extra: pip install -e '.[dev]'")


# bench.py

KEYS = {"probe_speedup", "lora_speedup", "predict_speedup", "peak_rss_ratio", "accuracy_ours", "accuracy_reference",
        "cpu_kind", "roofline_fraction", "matmul_gflops", "predict_gflops", "targets_met", "phases", "predict_levers"}


@SLOW
def test_benchmark_tiny(tmp_path):
    out = tmp_path / "bench.json"
    proc = subprocess.run([sys.executable, "benchmarks/bench.py", "--quick", "--model", "tiny", "--n-train", "4",
                           "--n-test", "2", "--lora-rows", "4", "--max-length", "96", "--out", str(out)],
                          capture_output=True, text=True, cwd=REPO)
    assert proc.returncode == 0, proc.stderr[-3000:]
    result = json.loads(out.read_text())
    assert KEYS <= set(result), KEYS - set(result)
    assert result["cpu_kind"] == cpu_kind()  # the bench's processes see this machine as the library does
    for phase in ("ref_probe", "ours_probe", "ours_probe_workers", "ref_lora", "ours_lora", "ref_predict",
                  "ours_predict", "ours_predict_workers", "ours_predict_b8", "ours_predict_b8_plain_malloc"):
        assert result["phases"][phase]["seconds"] > 0 and result["phases"][phase]["peak_rss_mb"] > 0
    # the lever phases really differ in what they say they measure
    phases = ("ours_predict", "ours_predict_b8", "ours_predict_b8_plain_malloc")
    malloc = [result["phases"][p]["malloc"] for p in phases]
    assert malloc == ["tuned", "tuned", "default"]
    assert [result["phases"][p]["batch_size"] for p in ("ours_predict", "ours_predict_b8")] == [2, 8]
    # workers: the same numbers as one process (a tiny model: auto keeps the probe in one process; prediction uses
    # every core)
    assert result["workers"]["predict_same_logits"] and result["workers"]["probe_same_probs"], result["workers"]
    for key in ("probe_speedup", "lora_speedup", "predict_speedup", "peak_rss_ratio", "roofline_fraction",
                "probe_speedup_workers", "predict_speedup_workers"):
        assert np.isfinite(result[key]) and result[key] > 0
    assert "probe, 3 epochs end to end" in proc.stdout and "roofline" in proc.stdout
    assert "prediction levers" in proc.stdout


@SLOW
def test_benchmark_emulated_avx2_phase():
    "--emulate-avx2 holds the phase processes to AVX2 kernels: phi_cls sees an AVX2 CPU and picks fp32 there."
    sys.path.insert(0, str(REPO / "benchmarks"))
    import bench
    result = bench.run_phase("ours_predict", ["--quick", "--model", "tiny", "--n-test", "2", "--max-length", "96"],
                             emulate_avx2=True)
    assert (result["cpu_kind"], result["precision"]) == ("avx2", "fp32")


# gpu_check.py

@SLOW
@needs_bitsandbytes
def test_gpu_check_dry_run_sweep(tmp_path):
    out = tmp_path / "gpu_check.json"
    proc = subprocess.run([sys.executable, "benchmarks/gpu_check.py", "--dry-run", "--sweep", "--out", str(out),
                           "--train-rows", "4", "--test-rows", "2"], cwd=REPO, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr[-3000:]
    s = json.loads(out.read_text())
    o = s["phi_cls"]
    # the default is phi_cls's auto: on a CPU that is the unquantized backbone and AdamW, the recipe's effective batch
    r = o["resolved"]
    assert (r["quantize"], r["optim"], r["effective_batch"], o["max_length"]) == ("none", "adamw_torch", 32, 128)
    assert o["train_samples_per_s"] > 0 and o["train_tokens_per_s"] > 0 and o["predict_examples_per_s"] > 0
    assert 20 < o["mean_tokens"] <= 128  # real gsm8k-pairs rows, cut at max_length
    assert s["reference"]["train_samples_per_s"] > 0 and s["reference"]["predict_examples_per_s"] > 0
    assert s["mfu"] is None and "dry run" in s["mfu_note"]  # no GPU peak on a CPU
    assert "| LoRA training, samples/s |" in proc.stdout and "MFU" in proc.stdout
    rows = {r["name"]: r for r in s["sweep"]}
    assert list(rows)[:2] == ["reference way (4-bit, checkpointing, 1 x 2)", "phi_cls default (auto)"]
    assert len(rows) == 10
    assert not [r for r in rows.values() if "error" in r], [r["error"] for r in rows.values() if "error" in r]
    assert all(r["samples_per_s"] > 0 and r["timed_steps"] == 2 and 0 <= r["steady"] < 1 for r in rows.values())
    four = rows["4-bit, 2 x 1"]
    assert (four["quantize"], four["micro_batch_size"], rows["bf16, 1 x 2"]["accumulation_steps"]) == ("4bit", 2, 2)
    assert rows["4-bit, checkpointing, 1 x 2"]["gradient_checkpointing"]
    assert not rows["default, no length grouping"]["group_by_length"]
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


@needs_bitsandbytes
def test_peaks_and_flops():
    sys.path.insert(0, str(REPO / "benchmarks"))
    from gpu_check import PHI4_MINI, linear_params, peak_tflops
    from transformers import Phi3Config
    gpus = ("NVIDIA H200", "NVIDIA H100 80GB HBM3", "NVIDIA A100-SXM4-40GB", "NVIDIA L40S")
    assert tuple(peak_tflops(g) for g in gpus) == (989, 989, 312, 362)
    assert peak_tflops("NVIDIA GeForce GTX 1080") is None and peak_tflops(None) is None
    # Phi-4-mini: 3.2B linear weights besides the embeddings
    assert abs(linear_params(Phi3Config(**PHI4_MINI)) / 1e9 - 3.22) < 0.01


# quality.py

def _m(acc, bal, lo=None, hi=None):
    ci = {"balanced_accuracy": [lo, hi], "auroc": [0.4, 0.6]} if lo is not None else {}
    return dict(accuracy=acc, balanced_accuracy=bal, f1=0.5, auroc=0.5, n=10, intervals=ci)


METRICS = {"baselines": {"results": {"majority": dict(_m(0.5, 0.5, 0.5, 0.5), baseline="majority class"),
                                     "tfidf": dict(_m(0.6, 0.61, 0.5, 0.7), baseline="TF-IDF")}},
           "probe": dict(_m(0.7, 0.72, 0.6, 0.8), layer=20, checker=_m(0.55, 0.56, 0.5, 0.6),
                         hybrid=dict(_m(0.71, 0.73, 0.6, 0.8), rule="checker_or_classifier")),
           "lora": dict(_m(0.65, 0.66, 0.55, 0.75), checker=_m(0.55, 0.56, 0.5, 0.6),
                        hybrid=dict(_m(0.55, 0.56), rule="checker"))}


def test_rows_in_order_with_one_checker():
    rows = quality.signal_rows(METRICS, "gsm8k-pairs")
    assert [r["signal"] for r in rows] == ["majority class", "TF-IDF", "checker", "probe", "LoRA",
                                           "hybrid (probe; checker_or_classifier)", "hybrid (LoRA; checker)"]
    assert [r["kind"] for r in rows] == ["shortcut", "shortcut", "checker", "classifier", "classifier", "hybrid",
                                         "hybrid"]


def test_markdown_and_csv_carry_the_intervals():
    rows = quality.signal_rows(METRICS, "champ")
    md = quality.markdown(rows).splitlines()
    assert md[0].startswith("| data | signal | accuracy | balanced accuracy (95% CI)")
    assert "| champ | **probe** | 0.700 | 0.720 (0.60-0.80) | 0.500 | 0.500 (0.40-0.60) |" in md
    # no interval recorded: none shown
    assert "| champ | **hybrid (LoRA; checker)** | 0.550 | 0.560 | 0.500 | 0.500 |" in md
    df = quality.frame(rows)
    assert df.loc[df.signal == "TF-IDF", "balanced_accuracy_high"].item() == 0.7
    assert df.loc[df.signal == "probe", ["n", "auroc_low"]].values.tolist() == [[10, 0.4]]


def _s(af, ac, f1):
    return dict(acc_flawed=af, acc_correct=ac, f1=f1, n_flawed=6, n_correct=4,
                intervals={k: [v - .1, v + .1] for k, v in (("acc_flawed", af), ("acc_correct", ac), ("f1", f1))})


STEP_METRICS = {m: {"step_decision": {"threshold": 0.5, "rule": rule},
                    "steps": {"classifier": _s(0.3, 0.6, 0.4), "checker": _s(0.5, 1.0, 0.667),
                              "hybrid": _s(0.5, 0.9, 0.643), "always -1": _s(0.0, 1.0, 0.0),
                              "last step": _s(0.1, 0.0, 0.0), "random step": _s(0.2, 0.1, 0.133)}}
                for m, rule in (("probe", "checker"), ("lora", "earlier"))}


def test_step_table_rows_once_per_baseline_and_per_classifier():
    rows = quality.steps_rows(STEP_METRICS, "gsm8k-pairs")
    assert [r["signal"] for r in rows] == ["always -1", "last step", "random step", "checker", "probe",
                                           "hybrid (probe; rule: checker)", "LoRA", "hybrid (LoRA; rule: earlier)"]
    md = quality.steps_markdown(pd.DataFrame(rows)).splitlines()
    assert md[0] == ("| data | signal | flawed rows: exact step (95% CI) | correct rows: -1 (95% CI) | "
                     "F1 (95% CI) |")
    assert "| gsm8k-pairs | checker | 0.500 (0.40-0.60) | 1.000 (0.90-1.10) | 0.667 (0.57-0.77) |" in md
    s = quality.steps_settings(quality.parse(["--steps", "--out-dir", "x"]), "champ")
    assert s["steps"] and s["probe_layer"] == "last" and s["checker"]
    assert s["output_dir"].endswith("x/steps/champ")


def test_settings_keep_validation_and_take_overrides():
    a = quality.parse(["--data", "champ", "--max-train-samples", "8", "--out-dir", "somewhere"])
    s = quality.settings(a, "champ")
    assert s["keep_validation"] and s["checker"] and s["mode"] == "both" and s["max_train_samples"] == 8
    assert s["max_length"] == 512 and s["output_dir"].endswith("somewhere/champ") and s["overwrite"]


def test_from_runs_builds_the_table_without_training(tmp_path):
    for data in ("gsm8k-pairs", "champ"):
        run = tmp_path / "runs" / data; run.mkdir(parents=True)
        (run / "metrics.json").write_text(json.dumps(METRICS))
        (run / "run.json").write_text(json.dumps({"config": {"mode": "both", "max_length": 384, "output_dir": "x"},
                                                  "seconds": {"load": 5, "probe": 50, "total": 100}}))
    quality.main(["--from-runs", "--out-dir", str(tmp_path / "runs"), "--table", str(tmp_path / "q")])
    md = (tmp_path / "q.md").read_text()
    assert "| gsm8k-pairs | **probe** |" in md and "| champ | checker |" in md
    assert '- champ: 100 s in all; test rows 10; settings {"mode": "both", "max_length": 384}' in md
    assert "probe layer chosen on validation: 20" in md and "output_dir" not in md
    assert len(pd.read_csv(tmp_path / "q.csv")) == 14


def test_from_runs_needs_finished_runs(tmp_path):
    with pytest.raises(SystemExit, match="holds no finished run"):
        quality.main(["--from-runs", "--data", "champ", "--out-dir", str(tmp_path), "--table", str(tmp_path / "q")])
