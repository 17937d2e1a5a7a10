"""Steps: step-labelled files (ProcessBench JSON arrays, TRL stepwise JSONL, a first_error_step column) through
`phi-cls check` and `load_data`, end to end and refused with the file, row and column named; the step scores against
numbers worked out by hand."""
import json

import numpy as np
import pandas as pd
import pytest

from conftest import WRONG, phi_cls_here as here, refused
from phi_cls.data import DataError, load_data
from phi_cls.steps import step_metrics

PB = [{"id": "a", "problem": "What is 7 times 8?", "steps": WRONG.split("\n"), "label": 1},
      {"id": "b", "problem": "What is 7 times 8?", "steps": ["We need 7 * 8.", "7 * 8 = 56", "So 56."], "label": -1},
      {"id": "c", "problem": "What is (2 + 2) * 3?", "steps": ["Two and two make five.", "Then 4 * 3 = 13"],
       "label": 0}]  # c: the checker cannot read the wrong step 0, and flags step 1
TRL = [{"prompt": p["problem"], "completions": p["steps"],
        "labels": [i < p["label"] or p["label"] < 0 for i in range(len(p["steps"]))]} for p in PB]


def _jsonl(path, rows):
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def _bad(kind, folder):
    "A step-labelled file with one bad row (row 1), and what the refusal must say besides the file name."
    if kind == "past_last_step":
        df = pd.DataFrame({"question": ["q", "q"], "solution": [WRONG, "7 * 8 = 56\nSo 56."], "label": [1, 1],
                           "first_error_step": [1, 2]})
        return folder / "in.csv", lambda p: df.to_csv(p, index=False), (
            "column 'first_error_step' points past the last step in 1 row: row 1 ('2 of 2 steps')",)
    if kind == "trl_labels_length":
        rows = [TRL[0], dict(TRL[1], labels=[True, True])]
        return folder / "in.jsonl", lambda p: _jsonl(p, rows), (
            "(TRL stepwise format), column 'labels' is not a list of true/false, one per step of 'completions', "
            "in 1 row: row 1 ([True, True])",)
    if kind == "pb_steps_not_list":
        rows = [PB[0], dict(PB[1], steps="We need 7 * 8. 7 * 8 = 56")]
        return folder / "in.json", lambda p: p.write_text(json.dumps(rows)), (
            "(ProcessBench format), column 'steps' is not a list of non-empty steps", "in 1 row: row 1 (")
    if kind == "trl_labels_numbers":  # 1 is right to TRL, flawed to phi_cls: not guessed
        rows = [TRL[0], dict(TRL[1], labels=[1, 1, 1])]
        return folder / "in.jsonl", lambda p: _jsonl(p, rows), (
            "(TRL stepwise format), column 'labels' is not a list of true/false", "in 1 row: row 1 ([1, 1, 1])",
            "true: the step is right", "0 / 1 are not read")
    if kind == "mixed_formats":  # a TRL row among ProcessBench rows: named, not an empty 'steps'
        rows = [PB[0], TRL[1]]
        return folder / "in.jsonl", lambda p: _jsonl(p, rows), (
            "mixes row formats: ProcessBench (problem, steps) and TRL stepwise (prompt, completions) in 1 row: row 1",
            "Use one format per file")
    if kind == "pb_label_bool":  # ProcessBench's label is a step number: True is not step 1
        rows = [PB[0], dict(PB[1], label=True)]
        return folder / "in.json", lambda p: p.write_text(json.dumps(rows)), (
            "(ProcessBench format), column 'label' is not the index of a step of its row in 1 row: row 1 ('True (3 "
            "steps)')", "-1 when every step is right")
    if kind == "first_error_step_bool":
        rows = [dict(question="q", solution=WRONG, label=1, first_error_step=1),
                dict(question="q", solution=WRONG, label=1, first_error_step=True)]
        return folder / "in.jsonl", lambda p: _jsonl(p, rows), (
            "column 'first_error_step' is not a whole number from -1 up in 1 row: row 1 (True)",)
    if kind == "pb_first_error_step_disagrees":  # the label must not silently replace the user's own column
        rows = [dict(PB[0], first_error_step=1), dict(PB[1], first_error_step=2)]
        return folder / "in.json", lambda p: p.write_text(json.dumps(rows)), (
            "(ProcessBench format), column 'first_error_step' disagrees with 'label' in 1 row: row 1 (\"2; 'label' "
            "gives -1\")", "drop the 'first_error_step' column")
    if kind == "trl_conversational_prompt":  # TRL's conversational form: the prompt as a list of messages
        rows = [TRL[0], dict(TRL[1], prompt=[{"role": "user", "content": TRL[1]["prompt"]}])]
        return folder / "in.jsonl", lambda p: _jsonl(p, rows), (
            "(TRL stepwise format), column 'prompt' is empty or not text in 1 row: row 1 ([{'role': 'user'",
            "A conversational prompt (a list of messages) is not read")
    raise ValueError(kind)


KINDS = ["past_last_step", "trl_labels_length", "trl_labels_numbers", "pb_steps_not_list", "pb_label_bool",
         "first_error_step_bool", "pb_first_error_step_disagrees", "mixed_formats"]


@pytest.mark.parametrize("kind", KINDS)
def test_check_refuses_bad_steps(tmp_path, kind):
    "`phi-cls check` names the file, row and column, and writes nothing."
    path, write, says = _bad(kind, tmp_path)
    write(path)
    refused("check", "--input", path, "--output", tmp_path / "out.csv", "--no-progress", says=(str(path), *says),
            watch=tmp_path)


@pytest.mark.parametrize("kind", [*KINDS, "trl_conversational_prompt"])  # check reads no question
def test_load_data_refuses_bad_steps(tmp_path, kind):
    "The same rows as a test split of a folder: `load_data` names the file, split, row and column."
    path, write, says = _bad(kind, tmp_path)
    train = pd.DataFrame({"question": ["q"], "solution": ["2 + 2 = 4"], "label": [0]})
    (data := tmp_path / "data").mkdir()
    train.to_csv(data / "train.csv", index=False)
    write(data / f"test{path.suffix}")
    with pytest.raises(DataError) as e: load_data(data)
    assert len(str(e.value).splitlines()) == 1
    for part in (f"{data / f'test{path.suffix}'}, split 'test'", *says): assert part in str(e.value), (part, e.value)


def _step_scores(stdout: str) -> dict:
    "The rows of the step table `phi-cls check` prints: name -> (acc_flawed, acc_correct, f1)."
    rows = {}
    for line in stdout.splitlines():
        for name in ("checker", "always -1", "last step", "random step"):
            if line.startswith(name + " "):
                rows[name] = tuple(float(v) for v in line[len(name):].split()[0:9:3])
    return rows


@pytest.mark.parametrize("fmt", ["processbench_json_array", "trl_jsonl", "trl_csv_from_pandas"])
def test_check_reads_step_formats(tmp_path, fmt):
    """A ProcessBench JSON array, a TRL JSONL file and a TRL CSV as pandas writes one (lists as Python literals):
    checker_step per row, the step scores below the summary."""
    names = {"processbench_json_array": "pb.json", "trl_jsonl": "trl.jsonl", "trl_csv_from_pandas": "t.csv"}
    path = tmp_path / names[fmt]
    if fmt == "processbench_json_array": path.write_text(json.dumps(PB, indent=1))
    elif fmt == "trl_jsonl": _jsonl(path, TRL)
    else: pd.DataFrame(TRL).to_csv(path, index=False)  # "['We need 7 * 8.', ...]", "[True, False, False]"
    proc = here("check", "--input", path, "--output", tmp_path / "out.csv", "--no-progress")
    assert proc.returncode == 0, proc.stderr
    out = pd.read_csv(tmp_path / "out.csv")
    # a: line 2 (7 * 8 = 54) is step 1, the true first error; b: nothing; c: 4 * 3 = 13 is step 1, later than 0
    assert out["checker_step"].tolist() == [1, -1, 1]
    assert out["error_line"].fillna(0).astype(int).tolist() == [2, 0, 2]
    assert out["true_label"].tolist() == [1, 0, 1]
    assert out.columns.tolist().index("checker_step") == out.columns.tolist().index("error_line") + 1
    assert "first wrong step, on 2 flawed and 1 correct rows of known step (--step-separator line" in proc.stdout
    scores = _step_scores(proc.stdout)
    assert list(scores) == ["checker", "always -1", "last step", "random step"]
    assert scores["checker"] == (0.5, 1.0, 0.667)  # 1 of 2 flawed exact, the correct one left alone: F1 2/3
    assert scores["always -1"] == (0.0, 1.0, 0.0)
    assert scores["last step"] == (0.0, 0.0, 0.0)  # neither first error is in the last step


def test_check_without_steps_is_unchanged(tmp_path):
    "A file without steps: no checker_step, no step table, and --step-separator changes nothing in the output."
    pd.DataFrame({"question": ["q", "q"], "solution": [WRONG, "7 * 8 = 56"], "label": [1, 0]}).to_csv(
        tmp_path / "in.csv", index=False)
    outs = {}
    for sep in ("line", "blank"):
        proc = here("check", "--input", tmp_path / "in.csv", "--output", tmp_path / f"{sep}.csv", "--no-progress",
                    "--step-separator", sep)
        assert proc.returncode == 0 and "first wrong step" not in proc.stdout, proc.stderr
        outs[sep] = (tmp_path / f"{sep}.csv").read_bytes()
    assert outs["line"] == outs["blank"]
    assert "checker_step" not in outs["line"].decode()


def test_step_metrics_by_hand():
    "Seven rows, one of unknown step; the scores and the bootstrap as a plain loop over resamples computes them."
    true = [-1, -1, -1, 0, 3, 1, pd.NA]
    pred = [-1, -1, 2, 0, 1, 1, 0]
    m = step_metrics(true, pred, n_boot=300, seed=5)
    # correct rows: 2 of 3 say -1; flawed: 2 of 3 exact (rows 3 and 5); F1 = 2/3; the NA row does not count
    assert (m["n_correct"], m["n_flawed"]) == (3, 3)
    assert m["acc_correct"] == pytest.approx(2 / 3) and m["acc_flawed"] == pytest.approx(2 / 3)
    assert m["f1"] == pytest.approx(2 / 3)
    t, p = np.array(true[:6]), np.array(pred[:6])
    rng, boot = np.random.default_rng(5), {"acc_flawed": [], "acc_correct": [], "f1": []}
    for _ in range(300):
        i = rng.integers(0, 6, 6)
        flawed, hit = t[i] >= 0, t[i] == p[i]
        a = hit[flawed].mean() if flawed.any() else np.nan
        c = hit[~flawed].mean() if (~flawed).any() else np.nan
        for k, v in (("acc_flawed", a), ("acc_correct", c), ("f1", 0.0 if a + c == 0 else 2 * a * c / (a + c))):
            boot[k].append(v)
    for k, v in boot.items():
        v = np.array(v, dtype=float)
        assert m["intervals"][k] == pytest.approx(list(np.percentile(v[~np.isnan(v)], [2.5, 97.5]))), k


def test_check_paragraph_steps(tmp_path):
    "Steps of several lines (ProcessBench text): read with --step-separator blank, refused without it."
    rows = [{"problem": "What is 7 times 8?", "steps": ["We need 7 * 8.\nThat is a product.", "7 * 8 = 54\nSo 54."],
             "label": 1},
            {"problem": "What is 7 times 8?", "steps": ["We need 7 * 8.", "So 7 * 8 = 56.\nThe answer is 56."],
             "label": -1}]
    path = tmp_path / "pb.json"
    path.write_text(json.dumps(rows))
    proc = here("check", "--input", path, "--output", tmp_path / "out.jsonl", "--no-progress", "--step-separator",
                "blank")
    assert proc.returncode == 0, proc.stderr
    out = pd.read_json(tmp_path / "out.jsonl", lines=True)
    assert out["error_line"].tolist()[0] == 4 and out["checker_step"].tolist() == [1, -1]  # line 4: paragraph 1
    assert _step_scores(proc.stdout)["checker"] == (1.0, 1.0, 1.0)
    refused("check", "--input", path, "--output", tmp_path / "out2.csv", "--no-progress", watch=tmp_path,
            says=(str(path), "column 'steps'", "row 0", "step_separator='blank'"))


def test_check_needs_no_question_of_step_rows(tmp_path):
    "`check` reads only the solution: a conversational TRL prompt, refused by train and evaluate, is fine here."
    rows = [dict(t, prompt=[{"role": "user", "content": t["prompt"]}]) for t in TRL]
    proc = here("check", "--input", _jsonl(tmp_path / "trl.jsonl", rows), "--output", tmp_path / "out.csv",
                "--no-progress")
    assert proc.returncode == 0, proc.stderr
    assert pd.read_csv(tmp_path / "out.csv")["checker_step"].tolist() == [1, -1, 1]
