"""The embedded evaluation data: the GSM8K minimal-pairs builder and file, and CHAMP's fair (model-written only)
composition."""
import gzip, importlib.util, json, subprocess, sys

import pandas as pd
import pytest

from conftest import REPO
from phi_cls.data import champ_rows, gsm8k_pairs_file, load_data, split_problems

SCRIPT = REPO / "scripts" / "build_gsm8k_pairs.py"
FIXTURE = REPO / "tests" / "fixtures" / "gsm8k_train_head24.jsonl"
COLUMNS = ["index", "problem_id", "question", "solution", "label", "error_type", "error_detail", "changed_line"]


@pytest.fixture(scope="module")
def builder():
    spec = importlib.util.spec_from_file_location("build_gsm8k_pairs", SCRIPT)
    mod = importlib.util.module_from_spec(spec); spec.loader.exec_module(mod)
    return mod


@pytest.fixture(scope="module")
def shipped():
    with gzip.open(gsm8k_pairs_file(), "rt", encoding="utf-8") as f: return pd.DataFrame([json.loads(l) for l in f])


def _build(out, *extra):
    return subprocess.run([sys.executable, str(SCRIPT), "--input", str(FIXTURE), "--out", str(out), *extra],
                          capture_output=True, text=True, cwd=out.parent)


def test_builder_is_deterministic(tmp_path):
    a, b, c = tmp_path / "a.jsonl.gz", tmp_path / "b.jsonl.gz", tmp_path / "c.jsonl.gz"
    for out, seed in ((a, "0"), (b, "0"), (c, "1")):
        assert _build(out, "--seed", seed, "--problems", "12").returncode == 0
    assert a.read_bytes() == b.read_bytes()
    assert a.read_bytes() != c.read_bytes()  # the seed matters
    rows = [json.loads(l) for l in gzip.open(a, "rt")]
    assert len(rows) == 24 and sum(r["label"] for r in rows) == 12


def test_builder_reads_only_its_input(tmp_path):
    "An audit hook records every file the builder opens: besides Python itself, only --input."
    out = tmp_path / "p.jsonl.gz"
    code = f"""
import sys, os
seen = []
def hook(event, args):
    if event == "open" and isinstance(args[0], (str, bytes, os.PathLike)):
        seen.append(os.path.realpath(os.fsdecode(args[0])))
sys.addaudithook(hook)
sys.argv = ["build", "--input", {str(FIXTURE)!r}, "--out", {str(out)!r}, "--problems", "5"]
import runpy; runpy.run_path({str(SCRIPT)!r}, run_name="__main__")
skip = tuple(os.path.realpath(p) for p in {{sys.prefix, sys.base_prefix, sys.exec_prefix}})
skip += (os.path.realpath({str(SCRIPT)!r}),)
mine = sorted({{p for p in seen if not p.startswith(skip) and not p.startswith({str(out)!r})}})
print("\\n".join("OPENED " + p for p in mine))
"""
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    opened = [line[7:] for line in r.stdout.splitlines()
              if line.startswith("OPENED ") and not line.endswith((".py", ".pyc", ".so"))]
    assert opened == [str(FIXTURE.resolve())], opened


def test_builder_refuses_a_test_split(tmp_path):
    (tmp_path / "test.jsonl").write_text(FIXTURE.read_text())
    r = subprocess.run([sys.executable, str(SCRIPT), "--input", str(tmp_path / "test.jsonl"), "--out",
                        str(tmp_path / "o.gz")], capture_output=True, text=True)
    assert r.returncode != 0 and "test split" in r.stderr and not (tmp_path / "o.gz").exists()


def _twins(df):
    return df[df.label == 1].merge(df[df.label == 0], on="problem_id", suffixes=("", "_correct"))


def test_shipped_file_is_compact_and_balanced(shipped):
    assert gsm8k_pairs_file().stat().st_size < 3_000_000
    assert list(shipped.columns) == COLUMNS + ["split"]
    assert shipped["index"].tolist() == list(range(len(shipped)))
    per_problem = shipped.groupby("problem_id")
    assert (per_problem.size() == 2).all() and (per_problem.label.sum() == 1).all()
    assert (per_problem.split.nunique() == 1).all()  # a pair never straddles splits
    assert shipped.problem_id.str.fullmatch(r"gsm8k-train-\d{5}").all()
    counts = shipped.error_type.value_counts()
    assert counts["none"] == len(shipped) // 2
    assert abs(counts["computational"] - counts["conceptual"]) <= 0.1 * counts["none"]
    assert shipped.groupby("split").problem_id.nunique().to_dict() == {"train": 1400, "validation": 200, "test": 400}
    assert shipped[shipped.label == 0].changed_line.isna().all()
    assert shipped[shipped.label == 1].changed_line.notna().all()


def test_computational_rows_change_one_calculation_from_the_changed_line_on(shipped, builder):
    t = _twins(shipped).query("error_type == 'computational'")
    assert len(t) > 500
    for _, r in t.iterrows():
        line, flawed, correct = int(r.changed_line), r.solution.split("\n"), r.solution_correct.split("\n")
        assert flawed[:line - 1] == correct[:line - 1] and flawed[line - 1] != correct[line - 1], r.problem_id
        # exactly the changed calculation fails to check out
        assert builder.wrong_lines(r.solution) == [line], r.problem_id
        assert flawed[-1] != correct[-1]  # the wrong value is carried to the final answer


def test_conceptual_rows_state_only_calculations_that_check_out(shipped, builder):
    from phi_cls.check import check_solution
    t = _twins(shipped).query("error_type == 'conceptual'")
    assert len(t) > 500
    for _, r in t.iterrows():
        line, flawed, correct = int(r.changed_line), r.solution.split("\n"), r.solution_correct.split("\n")
        assert flawed[:line - 1] == correct[:line - 1] and flawed[line - 1] != correct[line - 1]
        assert flawed[-1] != correct[-1]
        calcs = builder.stated_calculations(r.solution)
        assert calcs and all(stated == value for _, _, stated, value in calcs), r.problem_id
        assert check_solution(r.solution) == [], r.problem_id
    assert all(builder.wrong_lines(s) == [] for s in shipped[shipped.label == 0].solution)


def test_stated_calculations_recompute(builder):
    assert builder.wrong_lines("She has 3 x 4 = 12 eggs.\nThen 12 + 5 = 18 eggs.\n#### 18") == [2]
    assert builder.wrong_lines("He pays $60 + $20 = $80.\nSo 28(1/3) = 9 left.") == [2]  # implicit multiplication
    # fractions and prose are not claims
    assert builder.stated_calculations("It is 4/20 of the class and 5 books = 5") == []


def test_load_gsm8k_pairs_schema():
    dd = load_data("gsm8k-pairs")
    assert sorted(dd) == ["test", "train", "validation"]
    for split, ds in dd.items():
        assert ds.column_names == COLUMNS + ["first_error_step"]  # derived on load from changed_line
        assert 2 * sum(ds["label"]) == len(ds)
        flawed = ds.to_pandas().query("label == 1")
        nonblank_before = [sum(1 for line in s.split("\n")[:int(n) - 1] if line.strip())
                           for s, n in zip(flawed["solution"], flawed["changed_line"])]
        assert flawed["first_error_step"].tolist() == nonblank_before  # a step per non-empty line, counted from 0
    assert len(dd["test"]) == 800 and set(dd["test"]["error_type"]) == {"none", "computational", "conceptual"}


def test_champ_is_model_written_only_and_champ_all_is_the_old_set():
    rows = champ_rows()
    new, old = load_data("champ"), load_data("champ-all")
    assert all("reference" not in set(ds["source"]) for ds in new.values())
    assert sum(len(ds) for ds in new.values()) == (rows.source != "reference").sum() == 540
    split = rows.problem_id.map(split_problems(rows, seed=0))
    for s in ("train", "validation", "test"):
        assert old[s]["index"] == rows[split == s]["index"].tolist()  # the old composition, row for row
        assert new[s]["index"] == rows[(split == s) & (rows.source != "reference")]["index"].tolist()
