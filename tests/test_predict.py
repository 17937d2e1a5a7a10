"""`phi-cls predict` on files, stdin and zips, with and without labels, with the checker (its refusals: test_data.py,
test_settings.py, test_artifacts.py and test_run_folders.py). The real command (`cli`, a subprocess) for a CSV and for
stdin to stdout; the rest in this process (`here`)."""
import io, json, subprocess, sys

import numpy as np
import pandas as pd
import pytest

from conftest import REPO, WRONG, phi_cls as cli, phi_cls_here as here
from phi_cls.data import load_champ, training_splits


@pytest.fixture(scope="module")
def rows():
    test = training_splits(load_champ(), max_train_samples=24, max_eval_samples=12, seed=42)[2].to_pandas()
    return test[["index", "question", "solution", "label"]].head(6)


def test_csv_with_labels_matches_training_csv(tiny_run, rows, tmp_path):
    rows.to_csv(tmp_path / "in.csv", index=False)
    proc = cli("predict", "--model", tiny_run / "lora", "--input", tmp_path / "in.csv", "--output",
               tmp_path / "out.csv", "--no-progress")
    out = pd.read_csv(tmp_path / "out.csv")
    assert list(out.columns) == ["index", "p(class=0)", "p(class=1)", "label", "true_label"]
    assert "accuracy" in proc.stdout and "F1 (flawed)" in proc.stdout
    saved = pd.read_csv(tiny_run / "lora_finetuned_predictions.csv").set_index("index").loc[out["index"]]
    np.testing.assert_allclose(out["p(class=1)"], saved["p(class=1)"], atol=1e-4)
    threshold = json.loads((tiny_run / "lora" / "classifier.json").read_text())["threshold"]  # fitted on validation
    assert (out["label"] == (out["p(class=1)"] >= threshold)).all()
    assert (out["true_label"] == rows["label"].values).all()


def test_jsonl_without_labels_and_threshold(tiny_run, rows, tmp_path):
    rows.drop(columns=["label", "index"]).to_json(tmp_path / "in.jsonl", orient="records", lines=True)
    proc = here("predict", "--model", tiny_run / "probe", "--input", tmp_path / "in.jsonl", "--output",
                tmp_path / "out.jsonl", "--threshold", "0", "--batch-size", "2", "--no-progress")
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = pd.read_json(tmp_path / "out.jsonl", lines=True)
    assert list(out.columns) == ["index", "p(class=0)", "p(class=1)", "label"]
    assert out["index"].tolist() == list(range(6))
    assert (out["label"] == 1).all() and "accuracy" not in proc.stdout


def test_stdin_to_stdout_from_zip(tiny_run, rows):
    text = rows.to_json(orient="records", lines=True)
    proc = subprocess.run([sys.executable, "-m", "phi_cls.cli", "predict", "--model", str(tiny_run / "artifacts.zip"),
                           "--kind", "probe", "--input", "-", "--output", "-", "--no-progress"], input=text,
                          capture_output=True, text=True, cwd=REPO)
    assert proc.returncode == 0, proc.stderr[-2000:]
    out = pd.read_csv(io.StringIO(proc.stdout))
    assert len(out) == 6 and "true_label" in out and "accuracy" in proc.stderr


def test_parquet_with_checker(tiny_run, rows, tmp_path):
    extra = pd.DataFrame([{"index": 999, "question": "What is 7 times 8?", "solution": WRONG, "label": 1}])
    pd.concat([rows, extra]).to_parquet(tmp_path / "in.parquet")
    proc = here("predict", "--model", tiny_run, "--input", tmp_path / "in.parquet", "--output", tmp_path / "out.csv",
                "--checker", "--no-progress")
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = pd.read_csv(tmp_path / "out.csv", dtype={"error_line": "Int64", "stated": str, "computed": str})
    out = out.set_index("index")
    assert list(out.columns) == ["p(class=0)", "p(class=1)", "label", "true_label", "decided_by", "error_line",
                                 "error_text", "stated", "computed", "checker_status", "checker_reason"]
    assert out.loc[999, "decided_by"] == "checker" and out.loc[999, "label"] == 1
    assert out.loc[999, "checker_status"] == "checked"
    found = (out.loc[999, "error_line"], out.loc[999, "error_text"], out.loc[999, "stated"], out.loc[999, "computed"])
    assert found == (2, "7 * 8 = 54", "54", "56")
    assert "hybrid" in proc.stdout and "checker" in proc.stdout
