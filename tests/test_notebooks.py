"""The papermill notebooks run end to end on the tiny model, leave a complete run folder, and stop early on bad
parameters."""
import json, subprocess, sys, zipfile
from pathlib import Path

import nbformat
import pandas as pd
import pytest

from conftest import SLOW, REPO

TINY = ["-p", "model", "tiny", "-p", "max_train_samples", "24", "-p", "max_eval_samples", "12", "-p", "max_length",
        "128", "-p", "epochs", "2", "-p", "batch_size", "4"]
FIGURES = ["loss", "confusion", "roc", "pr", "reliability", "p_hist"]


def papermill(notebook, out, *args, check=True):
    proc = subprocess.run([str(Path(sys.executable).parent / "papermill"), f"nbs/{notebook}", str(out),
                           "--no-progress-bar", *map(str, args)], capture_output=True, text=True, cwd=REPO)
    if check and proc.returncode:
        raise AssertionError(f"papermill {notebook} failed:\n{proc.stderr[-4000:]}")
    return proc


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    "A probe run via -p, a LoRA run via a YAML file (-f), both into one output folder."
    root = tmp_path_factory.mktemp("nb")
    papermill("train.ipynb", root / "probe.ipynb", "-p", "mode", "probe", "-p", "output_dir", root, *TINY)
    (root / "lora.yaml").write_text(f"mode: lora\noutput_dir: {root}\nrun_name: lora-yaml\n")
    papermill("train.ipynb", root / "lora.ipynb", "-f", root / "lora.yaml", *TINY)
    return root


def _errors(nb_path):
    nb = nbformat.read(nb_path, as_version=4)
    return [o for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", [])
            if o.get("output_type") == "error"]


@pytest.mark.parametrize("run_name, mode", [("probe", "probe"), ("lora-yaml", "lora")])
def test_train_notebook_leaves_complete_run(runs, run_name, mode):
    run = runs / run_name
    assert not _errors(runs / f"{'probe' if mode == 'probe' else 'lora'}.ipynb")
    csv = {"probe": "probe_baseline_predictions.csv", "lora": "lora_finetuned_predictions.csv"}[mode]
    for name in [csv, "metrics.json", "config.json", "run.json", "artifacts.zip", "executed_notebook.ipynb",
                 f"{mode}/head.safetensors"]:
        assert (run / name).exists(), name
    for fig in FIGURES:
        assert (run / "figures" / f"{mode}_{fig}.png").stat().st_size > 5000, fig
    card = json.loads((run / "run.json").read_text())
    assert card["status"] == "finished" and card["config"]["mode"] == mode and card["config"]["max_train_samples"] == 24
    assert {"torch", "transformers"} <= set(card["versions"])
    assert card["data"]["fingerprint"] and card["seconds"]["total"] > 0
    assert card["resolved"]["device"] == "cpu"
    preds, metrics = pd.read_csv(run / csv), json.loads((run / "metrics.json").read_text())[mode]
    called = preds["p(class=1)"] >= metrics["threshold"]
    assert metrics["accuracy"] == pytest.approx((called == preds["true_label"]).mean())
    # the notebook scores all three
    assert {"checker", "hybrid"} <= set(metrics) and (run / f"{mode}_hybrid_predictions.csv").exists()
    executed = nbformat.read(run / "executed_notebook.ipynb", as_version=4)
    assert any(c.get("outputs") for c in executed.cells if c.cell_type == "code")
    assert "figures/" + f"{mode}_roc.png" in zipfile.ZipFile(run / "artifacts.zip").namelist()


def test_executed_notebook_shows_figures(runs):
    nb = nbformat.read(runs / "probe.ipynb", as_version=4)
    images = [o for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", [])
              if "image/png" in o.get("data", {})]
    assert images


def test_compare_notebook(runs, tmp_path):
    out = tmp_path / "cmp.ipynb"
    papermill("compare.ipynb", out, "-y", json.dumps({"runs": [str(runs / "probe"), str(runs / "lora-yaml")]}),
              "-p", "output_dir", tmp_path)
    folder = tmp_path / "comparison"
    table = pd.read_csv(folder / "comparison.csv")
    assert table["experiment"].tolist() == ["probe/probe", "lora-yaml/lora"]
    dis = pd.read_csv(folder / "disagreements.csv")
    assert {"index", "true_label", "right", "question"} <= set(dis.columns)
    assert (folder / "confidence_shift_1.png").exists() and (folder / "metrics.png").exists()
    assert not _errors(out)


@pytest.mark.parametrize("args, message", [
    (["-p", "mode", "lorra"], "mode='lorra' is not allowed; use one of probe, lora, both"),
    (["-p", "epochs", "-1"], "epochs=-1 must be a positive number"),
    (["-p", "data", "no/such/folder"], "no such file or folder"),
    (["-p", "epoch", "2"], "unknown parameter 'epoch'"),
])
@SLOW
def test_bad_parameter_stops_at_validation_cell(tmp_path, args, message):
    proc = papermill("train.ipynb", tmp_path / "bad.ipynb", "-p", "output_dir", tmp_path, *TINY, *args, check=False)
    assert proc.returncode != 0
    errors = _errors(tmp_path / "bad.ipynb")
    assert len(errors) == 1 and message in errors[0]["evalue"], errors
    nb = nbformat.read(tmp_path / "bad.ipynb", as_version=4)
    failing = next(c for c in nb.cells if c.cell_type == "code"
                   and any(o.get("output_type") == "error" for o in c.get("outputs", [])))
    assert "config_from_parameters" in failing.source  # stopped at the validation cell, before any training
    assert not list(tmp_path.glob("*/metrics.json"))
    # what the cell shows is the one line: papermill's own frames come above it, the notebook's traceback does not
    cell_part = proc.stderr.split('Exception encountered at "In [', 1)[1].split("\n", 1)[1].strip()
    assert len(cell_part.splitlines()) == 1 and message in cell_part, cell_part
