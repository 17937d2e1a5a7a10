"""benchmarks/quality.py (make quality): the table it builds from a run's metrics.json, without training anything."""
import importlib.util

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
