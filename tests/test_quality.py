"""benchmarks/quality.py (make quality): the table it builds from a run's metrics.json, without training anything."""
import importlib.util

import pandas as pd
import pytest

from conftest import REPO

spec = importlib.util.spec_from_file_location("quality", REPO / "benchmarks" / "quality.py")
quality = importlib.util.module_from_spec(spec); spec.loader.exec_module(quality)


def _m(acc, bal, lo=None, hi=None):
    ci = {"balanced_accuracy": [lo, hi], "auroc": [0.4, 0.6]} if lo is not None else {}
    return dict(accuracy=acc, balanced_accuracy=bal, f1=0.5, auroc=0.5, n=10, intervals=ci)


METRICS = {"baselines": {"results": {"majority": dict(_m(0.5, 0.5, 0.5, 0.5), baseline="majority class"),
                                     "tfidf": dict(_m(0.6, 0.61, 0.5, 0.7), baseline="TF-IDF")}},
           "probe": dict(_m(0.7, 0.72, 0.6, 0.8), layer=20, checker=_m(0.55, 0.56, 0.5, 0.6),
                         hybrid=dict(_m(0.71, 0.73, 0.6, 0.8), rule="checker_or_classifier")),
           "lora": dict(_m(0.65, 0.66, 0.55, 0.75), checker=_m(0.55, 0.56, 0.5, 0.6), hybrid=dict(_m(0.55, 0.56), rule="checker"))}


def test_rows_in_order_with_one_checker():
    rows = quality.signal_rows(METRICS, "gsm8k-pairs")
    assert [r["signal"] for r in rows] == ["majority class", "TF-IDF", "checker", "probe", "LoRA",
                                           "hybrid (probe; checker_or_classifier)", "hybrid (LoRA; checker)"]
    assert [r["kind"] for r in rows] == ["shortcut", "shortcut", "checker", "classifier", "classifier", "hybrid", "hybrid"]


def test_markdown_and_csv_carry_the_intervals():
    rows = quality.signal_rows(METRICS, "champ")
    md = quality.markdown(rows).splitlines()
    assert md[0].startswith("| data | signal | accuracy | balanced accuracy (95% CI)")
    assert "| champ | **probe** | 0.700 | 0.720 (0.60-0.80) | 0.500 | 0.500 (0.40-0.60) |" in md
    assert "| champ | **hybrid (LoRA; checker)** | 0.550 | 0.560 | 0.500 | 0.500 |" in md  # no interval recorded: none shown
    df = quality.frame(rows)
    assert df.loc[df.signal == "TF-IDF", "balanced_accuracy_high"].item() == 0.7
    assert df.loc[df.signal == "probe", ["n", "auroc_low"]].values.tolist() == [[10, 0.4]]


def test_settings_keep_validation_and_take_overrides():
    a = quality.parse(["--data", "champ", "--max-train-samples", "8", "--out-dir", "somewhere"])
    s = quality.settings(a, "champ")
    assert s["keep_validation"] and s["checker"] and s["mode"] == "both" and s["max_train_samples"] == 8
    assert s["max_length"] == 512 and s["output_dir"].endswith("somewhere/champ") and s["overwrite"]


def test_from_runs_builds_the_table_without_training(tmp_path):
    import json
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
