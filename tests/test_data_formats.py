"""Training from each supported data format, and the data checks at the process boundary.
`phi-cls train` runs in this process (`phi_cls_here`): the real command is run by conftest's `tiny_run`."""
import json

import pandas as pd
import pytest
from datasets import Dataset, DatasetDict

from conftest import TINY_FLAGS, phi_cls_here
from phi_cls.data import load_champ


def _rows(split, n, offset=0):
    df = load_champ()[split].to_pandas().head(n)
    return df[["question", "solution", "label", "index"]]


@pytest.fixture(scope="module")
def frames():
    return {"train": _rows("train", 12), "validation": _rows("validation", 4), "test": _rows("test", 6)}


def _write(kind, frames, folder):
    if kind == "save_to_disk":
        DatasetDict({k: Dataset.from_pandas(v, preserve_index=False) for k, v in frames.items()}).save_to_disk(str(folder / "dd"))
        return folder / "dd"
    if kind == "one_csv":
        pd.concat([v.assign(split=k) for k, v in frames.items()]).to_csv(folder / "all.csv", index=False)
        return folder / "all.csv"
    if kind == "jsonl_per_split":
        for k, v in frames.items(): v.to_json(folder / f"{k}.jsonl", orient="records", lines=True)
        return folder
    if kind == "parquet_per_split":
        for k, v in frames.items(): v.to_parquet(folder / f"{k}.parquet")
        return folder


@pytest.mark.parametrize("kind", ["save_to_disk", "one_csv", "jsonl_per_split", "parquet_per_split"])
def test_train_from_each_format(tmp_path, frames, kind):
    data = _write(kind, frames, tmp_path)
    out = tmp_path / "run"
    proc = phi_cls_here("train", *TINY_FLAGS, "--mode", "probe", "--data", data, "--out", out)
    assert proc.returncode == 0, proc.stderr[-3000:]
    preds = pd.read_csv(out / "probe_baseline_predictions.csv")
    assert sorted(preds["index"]) == sorted(frames["test"]["index"])  # evaluated on the test split
    assert json.loads((out / "metrics.json").read_text())["probe"]["n_train"] == 12  # validation is held out by default (keep_validation), to fit the decisions on


def test_keep_validation_evaluates_each_epoch(tmp_path, frames):
    data = _write("one_csv", frames, tmp_path)
    out = tmp_path / "run"
    proc = phi_cls_here("train", *TINY_FLAGS, "--mode", "probe", "--data", data, "--out", out, "--keep-validation")
    assert proc.returncode == 0, proc.stderr[-3000:]
    log = json.loads((out / "probe" / "training_log.json").read_text())
    assert any("eval_accuracy" in e for e in log)
    assert json.loads((out / "metrics.json").read_text())["probe"]["n_train"] == 12


@pytest.mark.parametrize("mutate, message", [
    (lambda f: f["train"].assign(label=[None] + [0] * 11), "column 'label'"),
    (lambda f: f["train"].assign(question=["   "] + ["q"] * 11), "column 'question'"),
    (lambda f: f["train"].assign(index=[5] * 12), "column 'index' repeats"),
    (lambda f: f["train"].drop(columns="solution"), "no column 'solution'"),
])
def test_bad_rows_stop_before_training(tmp_path, frames, mutate, message):
    bad = dict(frames, train=mutate(frames))
    data = _write("jsonl_per_split", bad, tmp_path)
    proc = phi_cls_here("train", *TINY_FLAGS, "--mode", "probe", "--data", data, "--out", tmp_path / "run")
    assert proc.returncode == 2 and message in proc.stderr and "train.jsonl" in proc.stderr, proc.stderr[-1500:]
