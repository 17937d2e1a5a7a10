"""Data: training from each supported format, the warnings a run gives about its data, and the bad-data matrix: every
file `train --data`, `check`, `predict` and `evaluate --input` refuse, with the file, split, column and row named.
The CLI runs in this process (`phi_cls_here`, `refused`); the real command is run by conftest's `tiny_run`."""
import json

import pandas as pd
import pytest
from datasets import Dataset, DatasetDict

from conftest import SLOW, TINY_FLAGS, WRONG, champ_frame, one_csv, phi_cls_here as here, refused
from phi_cls.data import read_table, validate_frame


def _frames(validation=0):
    "CHAMP rows: 12 train, `validation` validation and 6 test."
    frames = {"train": champ_frame("train", 12), "validation": champ_frame("validation", validation),
              "test": champ_frame("test", 6)}
    return {k: v for k, v in frames.items() if len(v)}


def _write(kind, frames, folder):
    if kind == "save_to_disk":
        DatasetDict({k: Dataset.from_pandas(v, preserve_index=False) for k, v in frames.items()}).save_to_disk(
            str(folder / "dd"))
        return folder / "dd"
    if kind == "one_csv": return one_csv(folder, frames, "all.csv")
    if kind == "jsonl_per_split":
        for k, v in frames.items(): v.to_json(folder / f"{k}.jsonl", orient="records", lines=True)
        return folder
    if kind == "parquet_per_split":
        for k, v in frames.items(): v.to_parquet(folder / f"{k}.parquet")
        return folder


# every supported format

@SLOW
@pytest.mark.parametrize("kind", ["save_to_disk", "one_csv", "jsonl_per_split", "parquet_per_split"])
def test_train_from_each_format(tmp_path, kind):
    frames = _frames(validation=4)
    data = _write(kind, frames, tmp_path)
    out = tmp_path / "run"
    proc = here("train", *TINY_FLAGS, "--mode", "probe", "--data", data, "--out", out)
    assert proc.returncode == 0, proc.stderr[-3000:]
    preds = pd.read_csv(out / "probe_baseline_predictions.csv")
    assert sorted(preds["index"]) == sorted(frames["test"]["index"])  # evaluated on the test split
    # validation is held out by default (keep_validation), to fit the decisions on
    assert json.loads((out / "metrics.json").read_text())["probe"]["n_train"] == 12


@SLOW
def test_keep_validation_evaluates_each_epoch(tmp_path):
    data = _write("one_csv", _frames(validation=4), tmp_path)
    out = tmp_path / "run"
    proc = here("train", *TINY_FLAGS, "--mode", "probe", "--data", data, "--out", out, "--keep-validation")
    assert proc.returncode == 0, proc.stderr[-3000:]
    log = json.loads((out / "probe" / "training_log.json").read_text())
    assert any("eval_accuracy" in e for e in log)
    assert json.loads((out / "metrics.json").read_text())["probe"]["n_train"] == 12


def test_text_none_and_na_are_text(tmp_path):
    pd.DataFrame({"question": ["None", "q"], "solution": ["NA", "7 * 8 = 54"], "label": [0, 1]}).to_csv(
        tmp_path / "in.csv", index=False)
    proc = here("check", "--input", tmp_path / "in.csv", "--output", tmp_path / "out.csv", "--no-progress")  # streaming
    assert proc.returncode == 0 and "2 rows" in proc.stdout
    assert pd.read_csv(tmp_path / "out.csv")["checker_flawed"].tolist() == [0, 1]
    df = validate_frame(read_table(tmp_path / "in.csv"), "in.csv")  # the whole-file reader (training data)
    assert df[["question", "solution"]].values.tolist()[0] == ["None", "NA"]


# warnings, and the run goes on

@SLOW
def test_allow_leakage_trains_with_a_warning(tmp_path):
    data = _bad_file("leakage", tmp_path)
    proc = here("train", *TINY_FLAGS, "--mode", "probe", "--data", data, "--out", tmp_path / "run", "--allow-leakage")
    assert proc.returncode == 0 and "warning: 1 of 6 test rows" in proc.stdout
    assert (tmp_path / "run" / "metrics.json").exists()


@SLOW
def test_long_rows_warn_with_count(tmp_path):
    proc = here("train", "--mode", "probe", "--out", tmp_path / "run", *TINY_FLAGS[:-1], "--max-length", "96")
    assert proc.returncode == 0 and "12 of 12 rows are longer than max_length=96" in proc.stdout
    card = json.loads((tmp_path / "run" / "run.json").read_text())
    assert card["data"]["truncated"]["test"] == 12


# the bad-data matrix

def _rows():
    return pd.DataFrame({"index": [1, 2, 3], "question": ["What is 7 times 8?", "What is 2 + 2?", "What is 3 * 3?"],
                         "solution": [WRONG, "2 + 2 = 4", "3 * 3 = 9"], "label": [1, 0, 0]})


def _csv(tmp, df, name="in.csv"):
    df.to_csv(tmp / name, index=False)
    return tmp / name


def _long_jsonl(tmp):
    "5,000 JSON lines, line 4500 (after a blank line) not valid JSON: in the second chunk `check` reads."
    lines = [json.dumps({"question": f"What is {i} + 1?", "solution": f"{i} + 1 = {i + 1}", "label": 0,
                         "split": "train"}) for i in range(5000)]
    lines[4498] = '{"question": "What is 1 + 1?" "solution": "2"}'
    (tmp / "in.jsonl").write_text("\n".join(lines[:10] + [""] + lines[10:]) + "\n")
    return tmp / "in.jsonl"


def _per_split_jsonl(tmp, mutate):
    frames = _frames(validation=4)
    return _write("jsonl_per_split", dict(frames, train=mutate(frames["train"])), tmp)


def _bad_file(kind, tmp):
    "A bad training file (a folder for the per-split kinds) of kind `kind` in `tmp`."
    f = _frames()
    if kind == "missing": return tmp / "nothing.csv"
    if kind == "format": (tmp / "data.txt").write_text("question,solution\n"); return tmp / "data.txt"
    if kind == "not_utf8":
        (tmp / "d.csv").write_bytes("question,solution,label,split\nr\xe9sum\xe9,x,0,train\n".encode("latin-1"))
        return tmp / "d.csv"
    if kind == "empty": (tmp / "d.jsonl").write_text(""); return tmp / "d.jsonl"
    if kind == "no_test": return one_csv(tmp, {"train": f["train"]})
    if kind == "no_column": return one_csv(tmp, {k: v.drop(columns="solution") for k, v in f.items()})
    if kind in ("nan_label", "str_label", "big_label"):
        value = {"nan_label": None, "str_label": "yes", "big_label": 2}[kind]
        f["train"]["label"] = f["train"]["label"].astype(object); f["train"].loc[3, "label"] = value
        return one_csv(tmp, f)
    if kind == "label_7":
        return _csv(tmp, pd.DataFrame({"question": ["a", "b", "c"], "solution": ["x", "y", "z"], "label": [0, 1, 7],
                                       "split": ["train", "test", "train"]}), "bad.csv")
    if kind == "empty_question": f["train"].loc[2, "question"] = ""; return one_csv(tmp, f)
    if kind == "blank_solution": f["test"].loc[1, "solution"] = "   \t "; return one_csv(tmp, f)
    if kind == "dup_index": f["train"].loc[5, "index"] = f["train"].loc[4, "index"]; return one_csv(tmp, f)
    if kind == "leakage": f["test"].loc[0, "question"] = f["train"].loc[0, "question"]; return one_csv(tmp, f)
    if kind == "one_class": f["train"]["label"] = 0; return one_csv(tmp, f)
    if kind == "jsonl_nan_label": return _per_split_jsonl(tmp, lambda t: t.assign(label=[None] + [0] * 11))
    if kind == "jsonl_blank_question": return _per_split_jsonl(tmp, lambda t: t.assign(question=["   "] + ["q"] * 11))
    if kind == "jsonl_dup_index": return _per_split_jsonl(tmp, lambda t: t.assign(index=[5] * 12))
    if kind == "jsonl_no_column": return _per_split_jsonl(tmp, lambda t: t.drop(columns="solution"))
    if kind == "jsonl_line": return _long_jsonl(tmp)
    raise ValueError(kind)


def _bad_input(kind, tmp):
    "A bad --input file (for check, predict and evaluate) of kind `kind` in `tmp`."
    if kind == "missing": return tmp / "in.csv"
    if kind == "empty": (tmp / "in.csv").write_text(""); return tmp / "in.csv"
    if kind == "no_solution": return _csv(tmp, pd.DataFrame({"question": ["q"], "answer": ["a"]}))
    if kind == "text_not_solution": return _csv(tmp, pd.DataFrame({"question": ["q"], "text": ["s"]}))
    if kind == "blank_solution": return _csv(tmp, pd.DataFrame({"question": ["q"], "solution": [" "]}))
    if kind == "empty_solution": (tmp / "in.csv").write_text("question,solution\nq,\nq,s\n"); return tmp / "in.csv"
    if kind == "float_index": return _csv(tmp, _rows().assign(index=[7.2, 7.9, 3]))
    if kind == "huge_index": return _csv(tmp, _rows().assign(index=[1e30, 2e30, 3]))
    if kind == "no_label": return _csv(tmp, champ_frame("test", 16, ["index", "question", "solution", "source"]))
    if kind == "jsonl_line": return _long_jsonl(tmp)
    raise ValueError(kind)


def _case(command, kind, *says, slow=False):
    return pytest.param(command, kind, says, id=f"{command}-{kind}", marks=[SLOW] if slow else [])


BAD_DATA = [
    _case("train", "missing", "nothing.csv", "no such file or folder"),
    _case("train", "format", "data.txt", "unknown file type '.txt'"),
    _case("train", "not_utf8", "d.csv", "is not UTF-8"),
    _case("train", "empty", "d.jsonl", "is empty"),
    _case("train", "no_test", "no split ['test']", "splits found: ['train']"),
    _case("train", "no_column", "no column 'solution'", "columns found: ['question', 'label', 'index', 'split']"),
    _case("train", "nan_label", "split 'train'", "column 'label'", "row 3 (nan)"),
    _case("train", "str_label", "column 'label'", "row 3 ('yes')"),
    _case("train", "big_label", "column 'label'", "row 3 (2)"),
    _case("train", "label_7", "bad.csv", "split 'train'", "column 'label'", "row 2 (7)"),
    _case("train", "empty_question", "column 'question' is empty", "row 2"),
    _case("train", "blank_solution", "split 'test'", "column 'solution' is empty", "row 13"),
    _case("train", "dup_index", "column 'index' repeats in 2 rows", "row 4", "row 5"),
    _case("train", "leakage", "1 of 6 test rows", "leakage", "--allow-leakage"),
    _case("train", "one_class", "only label 0", "max_train_samples"),
    _case("train", "jsonl_nan_label", "column 'label'", "train.jsonl"),
    _case("train", "jsonl_blank_question", "column 'question'", "train.jsonl"),
    _case("train", "jsonl_dup_index", "column 'index' repeats", "train.jsonl"),
    _case("train", "jsonl_no_column", "no column 'solution'", "train.jsonl"),
    _case("train", "jsonl_line", "in.jsonl, line 4500: not valid JSON (Expecting ',' delimiter at column 31)"),
    _case("check", "jsonl_line", "in.jsonl, line 4500: not valid JSON (Expecting ',' delimiter at column 31)"),
    _case("check", "float_index", "in.csv", "column 'index' is missing, not a whole number or beyond 64-bit integers "
                                            "in 2 rows: row 0 (7.2), row 1 (7.9)"),
    _case("check", "huge_index", "in.csv", "beyond 64-bit integers in 2 rows: row 0 (1e+30), row 1 (2e+30)"),
    _case("check", "empty_solution", "column 'solution' is empty or not text in 1 row: row 0 (nan)"),
    _case("check", "text_not_solution", "in.csv has no column 'solution'"),
    _case("predict", "text_not_solution", "in.csv has no column 'solution'", slow=True),
    _case("predict", "no_solution", "no column 'solution' (columns found: ['question', 'answer'])", slow=True),
    _case("predict", "blank_solution", "column 'solution' is empty", slow=True),
    _case("predict", "empty", "is empty", slow=True),
    _case("predict", "missing", "input file", slow=True),
    _case("evaluate", "no_label", "has no 'label' column", slow=True),
    _case("evaluate", "missing", "does not exist", slow=True),
]


@pytest.mark.parametrize("command, kind, says", BAD_DATA)
def test_bad_data(request, tmp_path, command, kind, says):
    "Refused before anything is written: no run folder, no output file or folder, nothing in the temporary folder."
    if command == "train":
        args = [*TINY_FLAGS, "--mode", "probe", "--data", _bad_file(kind, tmp_path), "--out", tmp_path / "run"]
    else:
        data = _bad_input(kind, tmp_path)
        model = ["--model", request.getfixturevalue("tiny_run") / "probe"] if command != "check" else []
        out = ["--out", tmp_path / "result"] if command == "evaluate" else ["--output", tmp_path / "new" / "out.csv"]
        args = [*model, "--input", data, *out, "--no-progress"]
    refused(command, *args, says=says, watch=tmp_path)
