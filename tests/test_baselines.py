"""Shortcut baselines and intervals in metrics.json, the warning line, and `phi-cls evaluate` (reusing the session's tiny run)."""
import json

import numpy as np
import pandas as pd
import pytest

from conftest import phi_cls
from phi_cls.metrics import baseline_metrics, shortcut_baselines, summary_lines, versus_baselines

OLD_KEYS = {"accuracy", "precision", "recall", "f1", "confusion_matrix", "n", "threshold", "n_train", "train_seconds"}


def test_tiny_run_metrics_have_baselines_and_intervals(tiny_run):
    metrics = json.loads((tiny_run / "metrics.json").read_text())
    base = metrics["baselines"]
    assert set(base["results"]) == {"majority", "length", "tfidf", "source"} and base["scored_on"] == "test (12 rows)"
    for r in base["results"].values():
        lo, hi = r["intervals"]["balanced_accuracy"]
        assert lo <= r["balanced_accuracy"] <= hi and r["n"] == 12
    for mode in ("probe", "lora"):
        m = metrics[mode]
        assert OLD_KEYS <= set(m) and {"balanced_accuracy", "auroc", "intervals", "lift", "warning"} <= set(m)
        assert m["lift"]["over"] in base["results"]
        best = max(r["balanced_accuracy"] for r in base["results"].values())
        assert m["lift"]["balanced_accuracy"] == pytest.approx(m["balanced_accuracy"] - best)
        assert (m["warning"] is not None) == (round(best, 2) >= round(m["balanced_accuracy"], 2))
    printed = (tiny_run.parent / "tiny.stdout").read_text()
    assert "shortcut baselines, fitted on the classifier's training rows (24)" in printed and "TF-IDF" in printed
    assert all(f"warning: {metrics[m]['warning']}" in printed for m in ("probe", "lora") if metrics[m]["warning"])


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
    assert m["warning"].startswith(f"The {results[m['lift']['over']]['baseline']} baseline (1.00) matches or beats the lora classifier (")
    assert m["warning"].endswith("this score may reflect style, not error detection.")
    lines = summary_lines({"lora": m, "baselines": dict(fitted_on="train (60 rows)", results=results)})
    assert lines[-1] == f"warning: {m['warning']}"


@pytest.fixture(scope="module")
def labelled(tmp_path_factory):
    from phi_cls.data import load_champ
    folder = tmp_path_factory.mktemp("evaluate")
    df = load_champ()["test"].to_pandas().head(16)[["index", "question", "solution", "label", "source"]]
    df.to_csv(folder / "rows.csv", index=False)
    df.drop(columns="label").to_csv(folder / "unlabelled.csv", index=False)
    return folder


def test_evaluate_writes_metrics_predictions_and_figures(tiny_run, labelled):
    out = labelled / "result"
    proc = phi_cls("evaluate", "--model", tiny_run / "probe", "--input", labelled / "rows.csv", "--out", out, "--checker", "--no-progress")
    assert "5-fold cross-validation on rows.csv itself, grouped by question" in proc.stdout and "probe classifier" in proc.stdout
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["evaluated"]["rows"] == 16 and set(metrics["baselines"]["results"]) == {"majority", "length", "tfidf", "source"}
    m = metrics["probe"]
    assert {"accuracy", "f1", "balanced_accuracy", "auroc", "intervals", "lift", "warning", "checker", "hybrid"} <= set(m)
    preds = pd.read_csv(out / "probe_baseline_predictions.csv")
    fitted = json.loads((tiny_run / "probe" / "classifier.json").read_text())["threshold"]  # the artifact's, by default
    assert metrics["evaluated"]["threshold"] == fitted
    assert len(preds) == 16 and m["accuracy"] == pytest.approx(((preds["p(class=1)"] >= fitted) == preds["true_label"]).mean())
    # the checker alone is what it found, whichever hybrid rule the artifact holds
    found = preds["error_line"].notna() & (preds["checker_status"] != "not checked")
    assert m["checker"]["confusion_matrix"][0][1] + m["checker"]["confusion_matrix"][1][1] == found.sum()
    assert {"probe_roc.png", "probe_confusion.png"} <= {p.name for p in (out / "figures").iterdir()}
    from phi_cls.report import baseline_table, load_experiments
    assert [e.mode for e in load_experiments(out)] == ["probe"]
    assert "TF-IDF" in baseline_table(out).index and "probe hybrid" in baseline_table(out).index


@pytest.mark.parametrize("case, message", [
    ("same_folder", "is the folder of the input file"),
    ("not_empty", "is not empty; name a new folder, or pass --overwrite"),
    ("no_labels", "has no 'label' column"),
    ("missing", "does not exist"),
])
def test_evaluate_bad_input(tiny_run, labelled, case, message, capsys):
    "In-process (the checks come before the model loads), so these cost no subprocess."
    from phi_cls.cli import main
    rows, out = labelled / "rows.csv", labelled / f"out_{case}"
    if case == "same_folder": out = labelled
    if case == "not_empty": out.mkdir(); (out / "notes.txt").write_text("mine")
    if case == "no_labels": rows = labelled / "unlabelled.csv"
    if case == "missing": rows = labelled / "nope.csv"
    rc = main(["evaluate", "--model", str(tiny_run / "probe"), "--input", str(rows), "--out", str(out)])
    err = capsys.readouterr().err
    assert rc == 2 and message in err, err
    assert case == "not_empty" and (out / "notes.txt").read_text() == "mine" or not (out / "metrics.json").exists()
