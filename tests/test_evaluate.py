"""`phi-cls evaluate` (metrics, predictions and figures for labelled rows, reusing the session's tiny run) and the
warning when a shortcut baseline matches the classifier. Its refusals: test_data.py and test_run_folders.py; the
baselines a training run records: test_train.py."""
import json

import numpy as np
import pandas as pd
import pytest

from conftest import champ_frame, phi_cls
from phi_cls.metrics import baseline_metrics, shortcut_baselines, summary_lines, versus_baselines


def test_warning_when_a_shortcut_wins():
    rng = np.random.default_rng(0)
    def rows(n):
        y = rng.integers(0, 2, n)
        return pd.DataFrame({"solution": [("therefore " * 30 if f else "") + "2 + 2 = 4" for f in y], "label": y})
    train, test = rows(60), rows(40)
    probs = shortcut_baselines(train, test)
    results = baseline_metrics(test.label, probs, n_boot=200)
    coin = rng.random(len(test))  # a classifier that reads nothing
    m = versus_baselines(test.label, coin, 0.5, probs, results, "lora classifier", n_boot=200)
    winner = results[m['lift']['over']]['baseline']
    assert m["warning"].startswith(f"The {winner} baseline (1.00) matches or beats the lora classifier (")
    assert m["warning"].endswith("this score may reflect style, not error detection.")
    lines = summary_lines({"lora": m, "baselines": dict(fitted_on="train (60 rows)", results=results)})
    assert lines[-1] == f"warning: {m['warning']}"


def test_evaluate_writes_metrics_predictions_and_figures(tiny_run, tmp_path):
    champ_frame("test", 16, ["index", "question", "solution", "label", "source"]).to_csv(tmp_path / "rows.csv",
                                                                                         index=False)
    out = tmp_path / "result"
    proc = phi_cls("evaluate", "--model", tiny_run / "probe", "--input", tmp_path / "rows.csv", "--out", out,
                   "--checker", "--no-progress")
    assert "5-fold cross-validation on rows.csv itself, grouped by question" in proc.stdout
    assert "probe classifier" in proc.stdout
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["evaluated"]["rows"] == 16
    assert set(metrics["baselines"]["results"]) == {"majority", "length", "tfidf", "source"}
    m = metrics["probe"]
    assert {"accuracy", "f1", "balanced_accuracy", "auroc", "intervals", "lift", "warning", "checker",
            "hybrid"} <= set(m)
    preds = pd.read_csv(out / "probe_baseline_predictions.csv")
    fitted = json.loads((tiny_run / "probe" / "classifier.json").read_text())["threshold"]  # the artifact's, by default
    assert metrics["evaluated"]["threshold"] == fitted
    assert len(preds) == 16
    assert m["accuracy"] == pytest.approx(((preds["p(class=1)"] >= fitted) == preds["true_label"]).mean())
    # the checker alone is what it found, whichever hybrid rule the artifact holds
    found = preds["error_line"].notna() & (preds["checker_status"] != "not checked")
    assert m["checker"]["confusion_matrix"][0][1] + m["checker"]["confusion_matrix"][1][1] == found.sum()
    assert {"probe_roc.png", "probe_confusion.png"} <= {p.name for p in (out / "figures").iterdir()}
    from phi_cls.report import baseline_table, load_experiments
    assert [e.mode for e in load_experiments(out)] == ["probe"]
    assert "TF-IDF" in baseline_table(out).index and "probe hybrid" in baseline_table(out).index
