"""Folders and files users own: evaluate and export into folders that already hold things (nothing lost, what is
replaced moved to previous-<time>/), refusals with one clear line and exit 2, messages that name the right thing, and
resources (workers, temporary folders).

Each case checks the exit code, the message, no traceback, and the user's folder before and after (a sha256 of every
file).
Refusals run `phi_cls.cli.main` in this process (`here`); a subprocess only where the process itself is the point."""
import hashlib, json, os, shutil
from pathlib import Path

import pandas as pd
import pytest

from conftest import phi_cls_here as here


def _tree(folder) -> dict:
    "Every file and folder under `folder` with the sha256 of its bytes (folders: None)."
    folder = Path(folder)
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest() if p.is_file() else None
            for p in sorted(folder.rglob("*"))}


def _refused(proc, *parts, code=2):
    "Exit `code`, one error line on stderr holding every part (besides phi_cls's one-line notes), no traceback."
    assert proc.returncode == code, (proc.returncode, proc.stderr[-2000:])
    assert "Traceback" not in proc.stderr + proc.stdout, proc.stderr[-2000:]
    lines = [line for line in proc.stderr.splitlines() if line.strip() and not line.startswith("phi_cls: ")]
    assert len(lines) == 1 and lines[0].startswith("phi-cls "), proc.stderr[-2000:]
    for part in parts: assert part in lines[0], (part, lines[0])


def _mine(folder) -> Path:
    "A folder of the user's own files, some named like evaluate's and export's results."
    folder.mkdir(parents=True)
    (folder / "notes.txt").write_text("my notes")
    (folder / "metrics.json").write_text('{"mine": true}')
    (folder / "README.md").write_text("# my project")
    (folder / "figures").mkdir(); (folder / "figures" / "plot.png").write_bytes(b"my plot")
    (folder / "data").mkdir(); (folder / "data" / "rows.csv").write_text("a,b\n1,2\n")
    return folder


@pytest.fixture(scope="module")
def rows(tmp_path_factory):
    "A labelled file of 12 CHAMP test rows (both classes), and one whose rows are all correct."
    from phi_cls.data import load_champ
    folder = tmp_path_factory.mktemp("rows")
    df = load_champ()["test"].to_pandas()[["index", "question", "solution", "label"]]
    df.head(12).to_csv(folder / "rows.csv", index=False)
    df[df.label == 0].head(10).to_csv(folder / "correct.csv", index=False)
    return folder


# 1. evaluate --overwrite: the user's files stay, evaluate's earlier results move aside

def test_evaluate_overwrite_keeps_users_files(tiny_run, rows, tmp_path):
    out = _mine(tmp_path / "results")
    before = _tree(out)
    proc = here("evaluate", "--model", tiny_run / "probe", "--input", rows / "rows.csv", "--out", out, "--overwrite",
                "--no-progress")
    assert proc.returncode == 0, proc.stderr
    prev = next(out.glob("previous-*"))
    assert f"moved figures, metrics.json to {prev}" in proc.stdout and "Other files stay where they are" in proc.stdout
    after = _tree(out)
    for name in ("notes.txt", "README.md", "data", "data/rows.csv"): assert after[name] == before[name], name
    for name in ("metrics.json", "figures", "figures/plot.png"): assert after[f"{prev.name}/{name}"] == before[name]
    assert "probe" in json.loads((out / "metrics.json").read_text())
    # again: the first evaluate's results move aside too, and nothing is lost
    first = {k: v for k, v in _tree(out).items() if not k.startswith("previous-")}
    assert here("evaluate", "--model", tiny_run / "probe", "--input", rows / "rows.csv", "--out", out, "--overwrite",
                "--no-progress").returncode == 0
    second = sorted(p for p in out.glob("previous-*") if p != prev)
    assert len(second) == 1
    moved = {k.split("/", 1)[1]: v for k, v in _tree(out).items() if k.startswith(second[0].name + "/")}
    assert moved == {k: v for k, v in first.items() if k.split("/")[0] in ("metrics.json", "figures",
                                                                             "probe_baseline_predictions.csv")}
    assert _tree(out)["notes.txt"] == before["notes.txt"] and not [p for p in tmp_path.iterdir() if p.name[0] == "."]


@pytest.mark.parametrize("holds", ["run", "classifier", "classifier_here"])
def test_evaluate_and_export_never_merge_into_a_run(tiny_run, rows, tmp_path, holds):
    "A run folder or a classifier folder is refused even with --overwrite: its metrics and predictions stay the run's."
    folder = tmp_path / "run"
    shutil.copytree(tiny_run, folder, ignore=shutil.ignore_patterns("checkpoints", "artifacts.zip"))
    if holds == "classifier": (folder / "run.json").unlink()
    out = folder / "probe" if holds == "classifier_here" else folder
    model = tmp_path / "model"; shutil.copytree(tiny_run / "probe", model)
    before = _tree(folder)
    what = "run.json" if holds == "run" else "classifier.json" if holds == "classifier_here" else "lora/classifier.json"
    for command in (["evaluate", "--input", rows / "rows.csv", "--no-progress"], ["export", "--fp32"]):
        proc = here(*command, "--model", model, "--out", out, "--overwrite")
        _refused(proc, f"holds a training run or a classifier ({what}", "never writes into it, even with --overwrite")
        assert _tree(folder) == before


@pytest.mark.parametrize("place", ["home", "cwd", "above", "root"])
@pytest.mark.parametrize("command", ["evaluate", "export"])
def test_overwrite_refused_on_home_cwd_and_above(tiny_run, rows, tmp_path, place, command):
    home = _mine(tmp_path / "home"); work = home / "project" / "src"; work.mkdir(parents=True)
    (work / "a.txt").write_text("a")
    out = {"home": "~", "cwd": ".", "above": "..", "root": "/"}[place]
    before = _tree(home)
    extra = ["--input", rows / "rows.csv", "--no-progress"] if command == "evaluate" else []
    proc = here(command, "--model", tiny_run / "probe", "--out", out, "--overwrite", *extra, cwd=work,
                env=dict(os.environ, HOME=str(home)))
    says = {"home": "is your home folder", "cwd": "is the current folder", "above": "is a folder above the current one",
            "root": "is the root folder"}[place]
    _refused(proc, says, "which holds more than results. Name a new folder")
    assert _tree(home) == before


def test_evaluate_failure_halfway_leaves_old_results_whole(tiny_run, rows, tmp_path):
    "A crash while the predictions are written (a worker that dies, a full disk): the old results stay as they were."
    out = _mine(tmp_path / "results")
    before = _tree(out)
    def crash(mp):
        import phi_cls.predict
        real = phi_cls.predict.predict_file
        def half(clf, src, dest, *a, **k):
            real(clf, src, dest, *a, **k)
            raise OSError(28, "No space left on device")
        mp.setattr(phi_cls.predict, "predict_file", half)
    proc = here("evaluate", "--model", tiny_run / "probe", "--input", rows / "rows.csv", "--out", out, "--overwrite",
                "--no-progress", patch=crash)
    _refused(proc, "No space left on device")
    assert _tree(out) == before and not [p for p in tmp_path.iterdir() if p.name.startswith(".")]
    new = tmp_path / "new" / "sub"
    proc = here("evaluate", "--model", tiny_run / "probe", "--input", rows / "rows.csv", "--out", new, "--no-progress",
                patch=crash)
    assert proc.returncode == 2 and not (tmp_path / "new").exists()  # no empty --out left behind


# 2. export --overwrite: it never deletes the folder

def test_export_overwrite_keeps_users_files(tiny_run, tmp_path):
    out = _mine(tmp_path / "hf")
    (out / "model-00001-of-00002.safetensors").write_bytes(b"an earlier export's shard")
    before = _tree(out)
    proc = here("export", "--model", tiny_run, "--kind", "probe", "--out", out, "--overwrite", "--fp32")
    assert proc.returncode == 0, proc.stderr
    prev = next(out.glob("previous-*"))
    assert f"to {prev}" in proc.stdout and "README.md" in proc.stdout
    after = _tree(out)
    for name in ("notes.txt", "metrics.json", "figures/plot.png", "data/rows.csv"): assert after[name] == before[name]
    for name in ("README.md", "model-00001-of-00002.safetensors"): assert after[f"{prev.name}/{name}"] == before[name]
    assert (out / "model.safetensors").exists() and "phi_cls" in json.loads((out / "config.json").read_text())
    assert not (out / "model-00001-of-00002.safetensors").exists()


def test_export_refusals_leave_the_folder_as_it_was(tiny_run, tmp_path):
    out = _mine(tmp_path / "hf")
    before = _tree(out)
    _refused(here("export", "--model", tiny_run / "probe", "--out", out), "is not empty", "--overwrite")
    _refused(here("export", "--model", tiny_run / "probe", "--out", tiny_run / "probe" / "hf", "--overwrite"),
             "overlaps the artifact folder")
    assert _tree(out) == before


# 3. a file where a folder should be

@pytest.mark.parametrize("command", ["train", "evaluate", "export"])
def test_out_under_a_file(tiny_run, rows, tmp_path, command):
    runs = tmp_path / "runs"; runs.mkdir(); (runs / "afile").write_text("mine")
    before = _tree(runs)
    extra = {"train": ["--model", "tiny", "--max-train-samples", "8"],
             "evaluate": ["--model", tiny_run / "probe", "--input", rows / "rows.csv"],
             "export": ["--model", tiny_run / "probe"]}[command]
    proc = here(command, *extra, "--out", runs / "afile" / "sub", "--overwrite")
    _refused(proc, f"{runs / 'afile'} is a file, not a folder", "Choose a folder path")
    assert _tree(runs) == before


# 4. a resumed run trusts only its own folder

@pytest.mark.parametrize("listed", ["../secret.txt", "/etc/hostname"])
def test_resume_refuses_a_card_naming_files_outside(tiny_run, tmp_path, listed):
    from conftest import TINY_FLAGS
    run = tmp_path / "run"
    shutil.copytree(tiny_run, run, ignore=shutil.ignore_patterns("checkpoints"))
    (tmp_path / "secret.txt").write_text("not the run's")
    card = json.loads((run / "run.json").read_text())
    (run / "run.json").write_text(json.dumps(dict(card, status="interrupted", files=[*card["files"], listed])))
    before = _tree(tmp_path)
    proc = here("train", "--mode", "both", *TINY_FLAGS, "--out", run, "--resume")
    _refused(proc, f"lists files outside its run folder ('{listed}')", "Restore the card, or start a new run")
    assert _tree(tmp_path) == before


# 5. quiet wrong results

def test_4bit_with_workers_is_refused(tiny_run, rows, tmp_path):
    "Workers would load the backbone unquantized: refused before anything loads, for predict and train alike."
    from conftest import TINY_FLAGS
    proc = here("predict", "--model", tiny_run / "probe", "--input", rows / "rows.csv", "--output", tmp_path / "p.csv",
                "--quantize", "4bit", "--workers", "2")
    _refused(proc, "--workers 2 with --quantize 4bit: a 4-bit backbone runs in one process", "--workers 1")
    proc = here("train", *TINY_FLAGS, "--quantize", "4bit", "--workers", "2", "--out", tmp_path / "run")
    _refused(proc, "workers=2 with quantize=4bit")
    assert sorted(p.name for p in tmp_path.iterdir()) == []


def test_evaluate_on_one_class_says_so(tiny_run, rows, tmp_path):
    proc = here("evaluate", "--model", tiny_run / "probe", "--input", rows / "correct.csv", "--out", tmp_path / "ev",
                "--no-progress")
    assert proc.returncode == 0, proc.stderr
    m = json.loads((tmp_path / "ev" / "metrics.json").read_text())["probe"]
    preds = pd.read_csv(tmp_path / "ev" / "probe_baseline_predictions.csv")
    called = int((preds["p(class=1)"] >= m["threshold"]).sum())
    line = ("warning: correct.csv has only correct rows (label 0), so balanced accuracy, F1 and AUROC are undefined "
            "or trivial on it and the baselines mean nothing. What it shows: accuracy "
            f"{1 - called / 10:.3f}, {called} of 10 rows called flawed.")
    assert line in proc.stdout.splitlines() and "matches or beats" not in proc.stdout


def test_base_model_with_custom_code_is_refused(tiny_run, rows, tmp_path):
    from phi_cls.model import tiny_dir
    base = tmp_path / "base"; shutil.copytree(tiny_dir(), base)
    config = json.loads((base / "config.json").read_text())
    config.update(model_type="evilphi", auto_map={"AutoConfig": "evil.Cfg", "AutoModel": "evil.Model"})
    (base / "config.json").write_text(json.dumps(config))
    (base / "evil.py").write_text(f"open({str(tmp_path / 'ran')!r}, 'w')\n")
    art = tmp_path / "probe"; shutil.copytree(tiny_run / "probe", art)
    info = json.loads((art / "classifier.json").read_text())
    (art / "classifier.json").write_text(json.dumps(dict(info, base_model=str(base))))
    proc = here("predict", "--model", art, "--input", rows / "rows.csv", "--output", tmp_path / "p.csv")
    _refused(proc, f"model '{base}' asks for custom code", "phi_cls never runs code that comes with a model")
    assert "trust_remote_code" not in proc.stderr and not (tmp_path / "ran").exists()
    assert not (tmp_path / "p.csv").exists()


# 6. resources

def test_workers_capped_by_rows_and_cores(tiny_run, rows, tmp_path):
    "--workers 100000 on 12 rows starts at most 12 (no more than the cores), says so once, and gives the same output."
    one = here("predict", "--model", tiny_run / "probe", "--input", rows / "rows.csv", "--output", tmp_path / "one.csv",
               "--workers", "1", "--no-progress")
    many = here("predict", "--model", tiny_run / "probe", "--input", rows / "rows.csv",
                "--output", tmp_path / "many.csv", "--workers", "100000", "--no-progress")
    assert one.returncode == 0 and many.returncode == 0, many.stderr
    assert many.stderr.count("asked for 100000, capped at") == 1, many.stderr
    assert (tmp_path / "one.csv").read_bytes() == (tmp_path / "many.csv").read_bytes()


@pytest.mark.parametrize("n_train, held", [(40, True), (12, False)])
def test_no_validation_split_holds_out_training_rows(tmp_path, n_train, held):
    ("Data with only train and test files: a seeded part of the training problems fits the decisions, or the run says "
     "they are defaults.")
    from conftest import TINY_FLAGS
    from phi_cls.data import load_champ
    champ = load_champ()
    data = tmp_path / "data"; data.mkdir()
    cols = ["index", "question", "solution", "label"]
    champ["train"].to_pandas()[cols].head(n_train).to_csv(data / "train.csv", index=False)
    champ["test"].to_pandas()[cols].head(12).to_csv(data / "test.csv", index=False)
    flags = [f for f in TINY_FLAGS if f not in ("champ",)]
    flags[flags.index("--data") + 1:flags.index("--data") + 1] = [str(data)]
    proc = here("train", "--mode", "probe", *flags, "--epochs", "1", "--out", tmp_path / "run", "--workers", "1")
    assert proc.returncode == 0, proc.stderr[-2000:]
    card = json.loads((tmp_path / "run" / "run.json").read_text())
    if held:
        line = next(x for x in proc.stdout.splitlines() if "has no validation split; held out" in x)
        n = int(line.split("held out ")[1].split()[0])
        rows_used = card["data"]["rows"]
        assert rows_used["validation"] == n and rows_used["train"] == min(24, n_train - n)  # --max-train-samples 24
        assert "to fit the threshold, temperature and hybrid rule" in line
        assert card["best_epoch"]["probe"] != "last (no held-out validation)"
    else:
        assert ("training rows are too few to hold some out: the threshold (0.5), temperature (1) and hybrid rule are "
                "defaults") in proc.stdout
        assert "validation" not in card["data"]["rows"]


def test_serve_stopped_by_sigterm_removes_its_temporary_folders(tiny_run, tmp_path):
    "`phi-cls serve` stopped with SIGTERM (as a service manager does) removes its unzipped artifact, as on Ctrl-C."
    import signal, socket, subprocess, sys, time
    tmp = tmp_path / "tmp"; tmp.mkdir()
    with socket.socket() as s: s.bind(("127.0.0.1", 0)); port = s.getsockname()[1]
    env = dict(os.environ, TMPDIR=str(tmp))
    proc = subprocess.Popen([sys.executable, "-m", "phi_cls.cli", "serve", "--model", str(tiny_run / "artifacts.zip"),
                             "--port", str(port)], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        for _ in range(240):  # until it listens (at most about 2 minutes on a busy machine)
            with socket.socket() as s:
                if s.connect_ex(("127.0.0.1", port)) == 0: break
            assert proc.poll() is None, proc.stderr.read()[-2000:]
            time.sleep(0.5)
        assert list(tmp.glob("phi_cls-*")), "the zip was not unzipped into a temporary folder"
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=60)
    finally:
        if proc.poll() is None: proc.kill()
    assert proc.returncode in (0, 128 + signal.SIGTERM), proc.stderr.read()[-2000:]  # stopped, as on Ctrl-C
    assert not list(tmp.glob("phi_cls-*")), sorted(p.name for p in tmp.iterdir())


def test_pickled_weights_are_one_line(tiny_run, tmp_path):
    "A base model whose weights are a pickle of more than tensors: one line, in phi_cls's words, exit 2."
    import argparse, torch
    from phi_cls.model import tiny_dir
    base = tmp_path / "pickled"
    shutil.copytree(tiny_dir(), base)
    for f in base.glob("*.safetensors"): f.unlink()
    torch.save({"w": argparse.Namespace(a=1)}, base / "pytorch_model.bin")
    rows = tmp_path / "rows.csv"
    pd.DataFrame({"question": ["q"], "solution": ["7 * 8 = 56"]}).to_csv(rows, index=False)
    before = _tree(tmp_path / "pickled")
    proc = here("predict", "--model", tiny_run / "probe", "--base-model", base, "--input", rows, "--output",
                tmp_path / "p.csv")
    _refused(proc, "pickle-format weights holding more than tensors")
    assert _tree(tmp_path / "pickled") == before and not (tmp_path / "p.csv").exists()
