"""The first wrong step where people read results: the figure of predicted against true step, `evaluate --steps` (its
step table against numbers worked out by hand, with a fake classifier in place of a trained step head; and end to end
on a tiny probe with a real step head) and the web demo's step list. Only the end-to-end test loads a model."""
import json

import numpy as np
import pandas as pd
import pytest

from conftest import phi_cls_here, refused

# eight rows, one question each; the true first wrong step, and what the fake step head and checker say
TRUE = [-1, -1, -1, 0, 1, 2, 1, None]  # None: flawed, step unknown (not scored)
HEAD = [-1, -1, 1, 0, 2, 2, 1, 0]  # exact on flawed rows 3, 5, 6 (3 of 4); -1 on correct rows 0, 1 (2 of 3)
ERROR_LINE = [None, 2, None, 1, 2, None, None, None]  # the checker's wrong line (1-based): steps -, 1, -, 0, 1, -, -, -
SOLUTIONS = ["a = 1\nb = 2", "a = 1\nb = 2", "a = 1\nb = 2", "a = 1\nb = 2\nc = 3", "a = 1\nb = 2\nc = 3",
             "a = 1\nb = 2\nc = 3", "a = 1\nb = 2", "a = 1\nb = 2"]


def _rows(tmp_path, with_steps=True):
    df = pd.DataFrame({"index": range(100, 108), "question": [f"q{i}" for i in range(8)], "solution": SOLUTIONS,
                       "label": [0 if t == -1 else 1 for t in TRUE]})
    if with_steps: df["first_error_step"] = pd.array(TRUE, dtype="Int64")
    df.to_csv(tmp_path / "rows.csv", index=False)
    return tmp_path / "rows.csv"


def _artifact(tmp_path, steps=True):
    art = tmp_path / "probe"
    art.mkdir()
    info = dict(kind="probe", base_model="tiny", max_length=128, threshold=0.5,
                backbone=dict(model_type="llama", hidden_size=8, num_hidden_layers=2, vocab_size=10))
    if steps: info["steps"] = dict(separator="line", decision=dict(threshold=0.5, rule="earlier"))
    (art / "classifier.json").write_text(json.dumps(info))
    return art


class FakeClassifier:
    "What evaluate reads of a loaded classifier."
    threshold = 0.5

    def __init__(self, info): self.info = info


def _patch(art, calls):
    ("load_classifier and predict_file (with `steps`) of a fake step head, whose every step is known in advance (a "
     "real one: test_evaluate_steps_end_to_end).")
    def load_classifier(model, **kwargs): return FakeClassifier(json.loads((art / "classifier.json").read_text()))

    def predict_file(clf, path, output, threshold=None, checker=False, progress=True, steps=False):
        calls.append(dict(path=str(path), checker=checker, steps=steps))
        rows = pd.read_parquet(path) if str(path).endswith(".parquet") else pd.read_csv(path)
        n, at = len(rows), rows["index"].to_numpy() - 100  # position in the lists above, whatever the row order
        p = np.linspace(0.2, 0.8, n)
        out = pd.DataFrame({"index": rows["index"], "p(class=0)": 1 - p, "p(class=1)": p, "label": (p >= 0.5) * 1,
                            "true_label": rows["label"]})
        if steps:
            head = np.array(HEAD)[at]
            out = out.assign(first_error_step=head, p_steps="[]", steps_unscored=0,
                             p_flawed_steps=np.where(head >= 0, 0.9, 0.1))
        if checker:
            line = pd.array([ERROR_LINE[i] for i in at], dtype="Int64")
            out = out.assign(decided_by="classifier", error_line=line, checker_status="checked")
            if steps:
                k = np.array([-1, 1, -1, 0, 1, -1, -1, -1])[at]
                out = out.assign(checker_step=k, hybrid_step=np.where((k >= 0) & (head >= 0), np.minimum(k, head),
                                                                      np.maximum(k, head)))
        out.to_csv(output, index=False)
        return {"rows": n}

    def patch(mp):
        import phi_cls.predict
        mp.setattr(phi_cls.predict, "load_classifier", load_classifier)
        mp.setattr(phi_cls.predict, "predict_file", predict_file)
    return patch


def _f1(a, b): return 2 * a * b / (a + b)


def test_first_error_figure_from_a_steps_csv(tmp_path):
    from phi_cls.report import fake_run, load_experiments, save_figures
    run = fake_run(tmp_path / "run", n=40, steps=True)
    steps = pd.read_csv(run / "probe_steps.csv")
    steps.assign(checker_step=-1, hybrid_step=steps["first_error_step"]).to_csv(run / "probe_steps.csv", index=False)
    names = {p.name: p for p in save_figures(run)}
    assert names["probe_first_error.png"].read_bytes()[:4] == b"\x89PNG"
    assert names["lora_first_error.png"].stat().st_size > 5000
    probe = load_experiments(run, ["probe"])[0]
    from phi_cls.report import plot_steps
    assert [ax.get_title() for ax in plot_steps(probe).axes] == ["run/probe: classifier", "run/probe: checker",
                                                                 "run/probe: hybrid"]
    plain = fake_run(tmp_path / "plain", n=40)  # no steps: no step figure, nothing read
    assert not [p for p in save_figures(plain) if "first_error" in p.name]
    assert all(e.steps is None for e in load_experiments(plain))


def test_evaluate_steps_table_by_hand(tmp_path):
    art, calls = _artifact(tmp_path), []
    out = tmp_path / "result"
    proc = phi_cls_here("evaluate", "--model", art, "--input", _rows(tmp_path), "--out", out, "--steps", "--checker",
                        "--no-progress", patch=_patch(art, calls))
    assert proc.returncode == 0, proc.stderr
    assert calls[0]["steps"] and calls[0]["checker"] and calls[0]["path"].endswith("rows.parquet")
    m = json.loads((out / "metrics.json").read_text())
    s = m["probe"]["steps"]
    assert set(s) == {"classifier", "checker", "hybrid", "always -1", "last step", "random step"}
    c = s["classifier"]
    assert (c["n_flawed"], c["n_correct"]) == (4, 3)  # the row with an unknown step is left out
    assert (c["acc_flawed"], c["acc_correct"]) == pytest.approx((3 / 4, 2 / 3))
    assert c["f1"] == pytest.approx(_f1(3 / 4, 2 / 3))
    assert c["intervals"]["f1"][0] <= c["f1"] <= c["intervals"]["f1"][1]
    k = s["checker"]  # steps -1, 1, -1, 0, 1, -1, -1: exact on rows 3, 4; -1 on rows 0, 2
    assert (k["acc_flawed"], k["acc_correct"]) == pytest.approx((2 / 4, 2 / 3))
    h = s["hybrid"]  # the earlier of the two: -1, 1, 1, 0, 1, 2, 1: exact on rows 3 to 6, -1 on row 0 only
    assert (h["acc_flawed"], h["acc_correct"]) == pytest.approx((4 / 4, 1 / 3))
    assert (s["always -1"]["acc_flawed"], s["always -1"]["acc_correct"], s["always -1"]["f1"]) == (0, 1, 0)
    assert s["last step"]["acc_flawed"] == pytest.approx(2 / 4)  # last steps 2, 2, 2, 1: rows 5 and 6
    assert m["probe"]["steps_p_flawed"]["confusion_matrix"] == [[2, 1], [0, 5]]
    # the checker flags rows 1 (correct), 3 and 4 (both at their first wrong step)
    loc = m["probe"]["checker_localisation"]
    assert {k: loc[k] for k in ("flagged", "exact", "later", "earlier", "correct_row")} == dict(
        flagged=3, exact=2, later=0, earlier=0, correct_row=1)
    assert m["evaluated"]["steps"] is True and m["evaluated"]["step_separator"] == "line"
    frame = pd.read_csv(out / "probe_steps.csv")
    assert list(frame.columns) == ["index", "true_first_error_step", "first_error_step", "p_steps", "steps_unscored",
                                   "checker_step", "hybrid_step"]
    assert frame["true_first_error_step"].isna().tolist() == [False] * 7 + [True]
    md = (out / "steps.md").read_text().splitlines()
    assert md[2].startswith("| classifier | ") and len(md) == 2 + 6 + 2  # and the checker's localisation
    assert md[-1] == ("Where the checker's step falls, of the rows it flags: flagged 3, the first wrong step 2, "
                      "later 0, earlier 0, on a correct row 1.")
    assert "\n".join(md) in proc.stdout
    assert (out / "figures" / "probe_first_error.png").exists()


def test_evaluate_steps_end_to_end(steps_probe, tmp_path):
    "`evaluate --steps --checker` on a tiny probe with a real step head: its files, and its steps are the classifier's."
    from phi_cls.predict import load_classifier
    from phi_cls.steps import step_metrics
    art, test = steps_probe
    test.to_csv(tmp_path / "rows.csv", index=False)
    out = tmp_path / "result"
    proc = phi_cls_here("evaluate", "--model", art, "--input", tmp_path / "rows.csv", "--out", out, "--steps",
                        "--checker", "--no-progress")
    assert proc.returncode == 0, proc.stderr
    assert sorted(p.name for p in out.iterdir()) == ["figures", "metrics.json", "probe_baseline_predictions.csv",
                                                     "probe_steps.csv", "steps.md"]
    assert (out / "figures" / "probe_first_error.png").read_bytes()[:4] == b"\x89PNG"
    frame = pd.read_csv(out / "probe_steps.csv").set_index("index").loc[test["index"]]
    assert (frame["true_first_error_step"].to_numpy() == test["first_error_step"].to_numpy()).all()
    ours = load_classifier(art).predict_frame(test, steps=True, checker=True).set_index("index")
    for col in ("first_error_step", "checker_step", "hybrid_step"): assert (frame[col] == ours[col]).all(), col
    np.testing.assert_allclose(np.concatenate([json.loads(s) for s in frame["p_steps"]]),
                               np.concatenate([json.loads(s) for s in ours["p_steps"]]), atol=1e-5)
    s = json.loads((out / "metrics.json").read_text())["probe"]["steps"]
    assert set(s) == {"classifier", "checker", "hybrid", "always -1", "last step", "random step"}
    true = test["first_error_step"].to_numpy()
    for name, col in (("classifier", "first_error_step"), ("checker", "checker_step"), ("hybrid", "hybrid_step")):
        want = step_metrics(true, frame[col].to_numpy(), n_boot=0)
        assert {k: s[name][k] for k in ("acc_flawed", "acc_correct", "n_flawed")} == pytest.approx(
            {k: want[k] for k in ("acc_flawed", "acc_correct", "n_flawed")}), name
    assert s["checker"]["acc_flawed"] == 1.0  # the planted slip is in the first wrong step
    md = (out / "steps.md").read_text().splitlines()
    assert [line.split(" | ")[0] for line in md[2:8]] == ["| classifier", "| checker", "| hybrid", "| always -1",
                                                          "| last step", "| random step"]
    assert "\n".join(md) in proc.stdout


def test_evaluate_checker_steps_without_a_step_head(tmp_path):
    art, calls = _artifact(tmp_path, steps=False), []
    out = tmp_path / "result"
    proc = phi_cls_here("evaluate", "--model", art, "--input", _rows(tmp_path), "--out", out, "--steps", "--checker",
                        "--no-progress", patch=_patch(art, calls))
    assert proc.returncode == 0, proc.stderr
    assert calls[0]["steps"] is False  # no step head to ask
    s = json.loads((out / "metrics.json").read_text())["probe"]["steps"]
    assert set(s) == {"checker", "always -1", "last step", "random step"}
    assert (s["checker"]["acc_flawed"], s["checker"]["acc_correct"]) == pytest.approx((2 / 4, 2 / 3))
    assert list(pd.read_csv(out / "probe_steps.csv").columns) == ["index", "true_first_error_step", "checker_step"]


def test_evaluate_without_steps_writes_nothing_of_steps(tmp_path):
    art, calls = _artifact(tmp_path), []
    out = tmp_path / "result"
    proc = phi_cls_here("evaluate", "--model", art, "--input", _rows(tmp_path), "--out", out, "--no-progress",
                        patch=_patch(art, calls))
    assert proc.returncode == 0, proc.stderr
    assert calls[0] == dict(path=str(tmp_path / "rows.csv"), checker=False, steps=False)  # the file itself, as before
    m = json.loads((out / "metrics.json").read_text())
    assert "steps" not in m["probe"] and "steps" not in m["evaluated"]
    assert sorted(p.name for p in out.iterdir()) == ["figures", "metrics.json", "probe_baseline_predictions.csv"]
    assert not [p for p in (out / "figures").iterdir() if "first_error" in p.name]
    assert "first wrong step" not in proc.stdout


def test_evaluate_steps_overwrite_keeps_the_users_files(tmp_path):
    "--overwrite over an earlier evaluate: the user's files stay, evaluate's own (step files too) go to previous-*/."
    art, out = _artifact(tmp_path), tmp_path / "result"
    rows = _rows(tmp_path)
    run = lambda *extra: phi_cls_here("evaluate", "--model", art, "--input", rows, "--out", out, "--no-progress",
                                      *extra, patch=_patch(art, []))
    assert run().returncode == 0  # without steps first
    (out / "notes.md").write_text("mine")
    (out / "steps.txt").write_text("mine too")
    first = (out / "metrics.json").read_bytes()
    for k in (1, 2):
        proc = run("--steps", "--overwrite")
        assert proc.returncode == 0, proc.stderr
        assert (out / "notes.md").read_text() == "mine" and (out / "steps.txt").read_text() == "mine too"
        assert (out / "steps.md").exists() and "steps" in json.loads((out / "metrics.json").read_text())["probe"]
        previous = sorted(out.glob("previous-*"))
        assert len(previous) == k
    assert (previous[0] / "metrics.json").read_bytes() == first and not (previous[0] / "steps.md").exists()
    assert {"steps.md", "probe_steps.csv", "metrics.json"} <= {p.name for p in previous[1].iterdir()}
    assert not [p for p in previous[1].iterdir() if p.name in ("notes.md", "steps.txt")]


@pytest.mark.parametrize("steps_head, extra, file_steps, says", [
    (False, [], True, ["has no step head", "--checker"]),
    (True, ["--step-separator", "blank"], True, ["--step-separator blank", "split by 'line'"]),
    (True, [], False, ["rows.csv has no step labels", "first_error_step"]),
])
def test_evaluate_steps_refusals(tmp_path, steps_head, extra, file_steps, says):
    art = _artifact(tmp_path, steps_head)
    rows = _rows(tmp_path, file_steps)
    refused("evaluate", "--model", art, "--input", rows, "--out", tmp_path / "result", "--steps", *extra,
            "--no-progress", says=says, watch=tmp_path, patch=_patch(art, []))


def test_serve_marks_the_first_wrong_step():
    from phi_cls.serve import _steps_view, _verdict_md
    r = dict(verdict="Flawed", p_flawed=0.8, decided_by="classifier", findings=[], checker="", note="",
             steps=dict(texts=["a = 1", "b = 3", "c = 4"], p_step=[0.1, 0.8, 0.9], first_error_step=1, unscored=0))
    assert _steps_view(r) == [("a = 1\n", None), ("b = 3\n", "first wrong step (p 0.80)"), ("c = 4\n", None)]
    assert "First wrong step: **step 2 of 3, p = 0.800**." in _verdict_md(r)
    r["steps"].update(checker_step=2, hybrid_step=1)
    assert [label for _, label in _steps_view(r)] == [None, "first wrong step; step head (p 0.80)",
                                                      "checker: wrong calculation"]
    assert "**step 2 of 3** (step head: step 2 of 3, p = 0.800; arithmetic checker: step 3 of 3)" in _verdict_md(r)
