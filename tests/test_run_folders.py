"""Where results go, and what phi_cls may replace there: the run folder of `train --out` (checked before it is touched,
one run per folder, only what phi_cls wrote is replaced), `evaluate --out`, and the output files of `predict` and
`check`; the lock, SIGTERM, write errors, resume, and a killed run resumed to the same result.
Refusals run `phi_cls.cli.main` in this process; a subprocess only where the process itself is the point."""
import dataclasses, json, os, platform, shutil, signal, subprocess, sys, time, zipfile
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from conftest import REPO, SLOW, TINY_FLAGS, WRONG, left_in, phi_cls_here as here, refused, tree
from phi_cls.cli import build_parser, config_from_args
from phi_cls.data import load_champ
from phi_cls.artifact import find_artifact
from phi_cls.runs import last_checkpoint


def _champ_files(folder, n_train=40, n_test=12):
    "train.csv and test.csv of CHAMP rows in `folder` (a data folder for --data)."
    dd = load_champ()
    folder.mkdir(parents=True, exist_ok=True)
    dd["train"].to_pandas().head(n_train).to_csv(folder / "train.csv", index=False)
    dd["test"].to_pandas().head(n_test).to_csv(folder / "test.csv", index=False)
    return folder


def _results(out):
    "Files that look like phi_cls results, with no run card listing them."
    (out / "checkpoints" / "lora" / "checkpoint-3").mkdir(parents=True)
    (out / "checkpoints" / "lora" / "checkpoint-3" / "model.safetensors").write_bytes(b"weights")
    (out / "metrics.json").write_text("{}"); (out / "artifacts.zip").write_bytes(b"zip")


def _env(tmp):
    "The environment of a run whose temporary files go to `tmp` (which must be empty afterwards)."
    tmp.mkdir(exist_ok=True)
    return dict(os.environ, TMPDIR=str(tmp))


# the refusal matrix: each setup makes the folders and returns the command's arguments (and where to run it)

def _out_named(out):
    def setup(tmp, request):
        home = tmp / "home"; home.mkdir(); _results(home)
        return dict(args=["train", "--out", str(home) if out == "~" else out, *TINY_FLAGS], cwd=home,
                    env=dict(HOME=str(home)))
    return setup


def _other_files(tmp, request):
    out = tmp / "run"; out.mkdir(); _results(out); (out / "notes.txt").write_text("mine")
    return dict(args=["train", "--out", out, *TINY_FLAGS], out=out)


def _finished_run(tmp, request):
    out = tmp / "run"
    shutil.copytree(request.getfixturevalue("tiny_run"), out)
    return dict(args=["train", "--mode", "probe", "--out", out, *TINY_FLAGS], out=out)


def _bad_data_over(holds):
    "Bad data while --out holds results or a finished run: the folder is left alone."
    def setup(tmp, request):
        out = tmp / "run"
        if holds == "results": out.mkdir(); _results(out)
        else: shutil.copytree(request.getfixturevalue("tiny_run"), out)
        (tmp / "bad.csv").write_text("question,solution,label,split\nq,s,2,train\nq2,s,0,test\n")
        return dict(args=["train", *TINY_FLAGS, "--data", tmp / "bad.csv", "--out", out])
    return setup


def _resume_other_data(tmp, request):
    data, out = _champ_files(tmp / "data"), tmp / "run"
    cfg = config_from_args(build_parser().parse_args(["train", *map(str, TINY_FLAGS), "--data", str(data), "--out",
                                                      str(out)]))
    out.mkdir()
    card = dict(status="interrupted", config=dataclasses.asdict(cfg), files=["run.json"], done={},
                data=dict(fingerprint="0" * 64, rows={"train": 24, "validation": 8, "test": 12}))
    (out / "run.json").write_text(json.dumps(card))
    return dict(args=["train", *TINY_FLAGS, "--data", data, "--out", out, "--resume"], out=out)


def _resume_other_settings(tmp, request):
    shutil.copytree(request.getfixturevalue("tiny_run"), tmp / "run")
    return dict(args=["train", "--mode", "both", "--out", tmp / "run", *TINY_FLAGS, "--learning-rate", "0.001",
                      "--resume"])


def _resume_nothing(tmp, request):
    return dict(args=["train", "--out", tmp / "new", *TINY_FLAGS, "--resume"])


def _locked(tmp, request):
    out, holder = tmp / "run", os.getppid()  # a live process other than this one (which runs the refused command)
    out.mkdir()
    (out / ".phi_cls.lock").write_text(json.dumps(dict(pid=holder, host=platform.node(),
                                                       started="2026-01-01T10:00:00+00:00")))
    return dict(args=["train", "--out", out, *TINY_FLAGS], out=out, holder=holder)


def _truncated_checkpoint(tmp, request):
    "A run killed during LoRA training, whose checkpoint is cut short: the checkpoints are left as they are."
    run = tmp / "run"
    shutil.copytree(request.getfixturevalue("tiny_run"), run)
    card = json.loads((run / "run.json").read_text())
    card["status"] = "running"; card["done"].pop("lora")  # as a run killed during LoRA training leaves it
    (run / "run.json").write_text(json.dumps(card))
    ckpt = next((run / "checkpoints" / "lora").glob("checkpoint-*"))
    (ckpt / "model.safetensors").write_bytes((ckpt / "model.safetensors").read_bytes()[:100])
    return dict(args=["train", "--mode", "both", "--out", run, *TINY_FLAGS, "--resume"], watch=run / "checkpoints",
                ckpt=ckpt, after=lambda: json.loads((run / "run.json").read_text())["status"] == "failed"
                and not list(run.rglob("*.tmp")))


def _evaluate_into(where):
    def setup(tmp, request):
        champ = load_champ()["test"].to_pandas().head(16)[["index", "question", "solution", "label", "source"]]
        champ.to_csv(tmp / "rows.csv", index=False)
        out = tmp if where == "input's folder" else tmp / "out"
        if where == "folder with files": out.mkdir(); (out / "notes.txt").write_text("mine")
        return dict(args=["evaluate", "--model", request.getfixturevalue("tiny_run") / "probe", "--input",
                          tmp / "rows.csv", "--out", out])
    return setup


def _output_is_input(command, output):
    def setup(tmp, request):
        data = tmp / "data"; data.mkdir()
        _rows().to_csv(data / "in.csv", index=False)
        (data / "link.csv").symlink_to(data / "in.csv")
        inp, out = "in.csv", output
        if output == "in.csv.tmp-of":  # the input is named like the output's temporary file
            os.replace(data / "in.csv", data / "out.csv.tmp"); (data / "link.csv").unlink()
            inp, out = "out.csv.tmp", "out.csv"
        model = ["--model", request.getfixturevalue("tiny_run") / "probe"] if command == "predict" else []
        return dict(args=[command, *model, "--input", inp, "--output", out, "--no-progress"], cwd=data, inp=inp,
                    output=out)
    return setup


def _output_is_a_folder(command):
    def setup(tmp, request):
        _rows().to_csv(tmp / "in.csv", index=False); (tmp / "out.csv").mkdir()
        model = ["--model", request.getfixturevalue("tiny_run") / "probe"] if command == "predict" else []
        return dict(args=[command, *model, "--input", tmp / "in.csv", "--output", tmp / "out.csv", "--no-progress"])
    return setup


def _rows():
    return pd.DataFrame({"index": [1, 2, 3], "question": ["What is 7 times 8?", "What is 2 + 2?", "What is 3 * 3?"],
                         "solution": [WRONG, "2 + 2 = 4", "3 * 3 = 9"], "label": [1, 0, 0]})


def _case(setup, *says, id, slow=False):
    return pytest.param(setup, says, id=id, marks=[SLOW] if slow else [])


RUN_FOLDER_REFUSALS = [
    # train --out: a folder of its own
    _case(_out_named(""), "output_dir='' names no folder", "Give the run a folder", id="out-empty"),
    _case(_out_named("/"), "output_dir='/' is the root folder", "a folder of its own", id="out-root"),
    _case(_out_named("~"), "is your home folder", "a folder of its own", id="out-home"),
    _case(_other_files, "{out} holds files no phi_cls run card lists: artifacts.zip, checkpoints, metrics.json, "
                        "notes.txt", "--overwrite", id="other-files"),
    _case(_finished_run, "{out} holds a finished run: mode=both, model=tiny", "--overwrite", id="finished-run",
          slow=True),
    _case(_bad_data_over("results"), "bad.csv, split 'train', column 'label' is not 0 or 1",
          id="bad-data-over-results"),
    _case(_bad_data_over("a finished run"), "bad.csv, split 'train', column 'label' is not 0 or 1",
          id="bad-data-over-a-finished-run", slow=True),
    _case(_locked, "{out} is in use by another training run (pid {holder} on " + platform.node() +
          ", started 2026-01-01T10:00:00+00:00)", id="locked"),
    # train --resume
    _case(_resume_nothing, "holds no run to resume", id="resume-nothing"),
    _case(_resume_other_data, "resume=True, but the data is not what the run in {out} started with (fingerprint "
                              "000000000000 then", "same row counts, other contents", id="resume-other-data"),
    _case(_resume_other_settings, "used other settings: learning_rate=0.0002 (now 0.001)", id="resume-other-settings",
          slow=True),
    _case(_truncated_checkpoint, "checkpoint {ckpt}/model.safetensors is incomplete or corrupted", "Delete {ckpt.name}",
          id="resume-truncated-checkpoint", slow=True),
    # evaluate --out
    _case(_evaluate_into("input's folder"), "is the folder of the input file", id="evaluate-into-input-folder",
          slow=True),
    _case(_evaluate_into("folder with files"), "is not empty; name a new folder, or pass --overwrite",
          id="evaluate-into-folder-with-files", slow=True),
    # predict and check --output
    *[_case(_output_is_input(command, output), "output '{output}' is the input file '{inp}'",
            "Choose another output file name", id=f"{command}-output-is-input-{output}", slow=command == "predict")
      for command in ("predict", "check") for output in ("in.csv", "./in.csv", "link.csv", "in.csv.tmp-of")],
    *[_case(_output_is_a_folder(command), "output '{tmp}/out.csv' is a folder; give a file name",
            id=f"{command}-output-is-a-folder", slow=command == "predict") for command in ("predict", "check")],
]


@pytest.mark.parametrize("setup, says", RUN_FOLDER_REFUSALS)
def test_refused_and_nothing_changed(request, tmp_path, setup, says):
    case = setup(tmp_path, request)
    root_card = Path("/run.json").exists()
    refused(*case["args"], says=[s.format(tmp=tmp_path, **case) for s in says], watch=case.get("watch", tmp_path),
            cwd=case.get("cwd"), env=case.get("env"))
    assert Path("/run.json").exists() == root_card
    assert case.get("after", lambda: True)()


# what may be replaced, and how

def test_overwrite_moves_the_old_run_aside_and_zips_only_the_new_run(tiny_run, tmp_path):
    out = tmp_path / "data"  # the data folder is also --out, and holds a finished `both` run
    shutil.copytree(tiny_run, out)
    _champ_files(out)
    old_run, data = tree(tiny_run), {k: v for k, v in tree(out).items() if k in ("train.csv", "test.csv")}
    proc = here("train", "--mode", "probe", *TINY_FLAGS, "--data", out, "--out", out, "--overwrite",
                env=_env(tmp_path / "tmp"))
    assert proc.returncode == 0, proc.stderr[-3000:]
    (moved,) = out.glob("previous-*")
    assert "--overwrite: moved artifacts.zip, checkpoints, config.json, lora" in proc.stdout
    assert str(moved) in proc.stdout
    assert "Other files stay where they are: test.csv, train.csv" in proc.stdout
    assert tree(moved) == old_run  # the old run, lora/ and all, byte for byte
    assert {k: v for k, v in tree(out).items() if k in data} == data and not (out / "lora").exists()
    card = json.loads((out / "run.json").read_text())
    assert card["status"] == "finished" and "lora" not in card["files"] and not (out / ".phi_cls.lock").exists()
    names = zipfile.ZipFile(out / "artifacts.zip").namelist()
    assert {n.split("/")[0] for n in names} == {"run.json", "config.json", "metrics.json", "probe",
                                                "probe_baseline_predictions.csv"}
    assert find_artifact(out).name == "probe"  # `predict --model <run>` uses this run's probe, not the old LoRA
    assert not list(out.rglob("*.tmp")) and not left_in(tmp_path / "tmp")


# the lock, signals and write errors

@SLOW
def test_sigterm_marks_the_run_interrupted_and_frees_the_folder(tmp_path):
    out = tmp_path / "run"; out.mkdir()
    gone = int(subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True,
                              text=True).stdout)
    (out / ".phi_cls.lock").write_text(json.dumps(dict(pid=gone, host=platform.node(),
                                                       started="2026-01-01T10:00:00+00:00")))
    proc = subprocess.Popen([sys.executable, "-m", "phi_cls.cli", "train", "--mode", "lora", "--out", str(out),
                             *map(str, TINY_FLAGS), "--epochs", "50"], cwd=REPO, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env=_env(tmp_path / "tmp"))
    deadline = time.time() + 300
    while proc.poll() is None and time.time() < deadline:
        if (out / "run.json").exists() and json.loads((out / "run.json").read_text())["status"] == "running": break
        time.sleep(0.05)
    assert proc.poll() is None, "the run ended before it could be stopped"
    proc.send_signal(signal.SIGTERM)
    stdout, stderr = proc.communicate(timeout=300)
    assert proc.returncode == 128 + signal.SIGTERM, stderr[-2000:]
    assert "phi-cls train: interrupted (stopped by SIGTERM)" in stderr, stderr[-2000:]
    assert "Traceback" not in stderr
    assert f"taking over {out / '.phi_cls.lock'} from a run that is gone (pid {gone}" in stdout
    card = json.loads((out / "run.json").read_text())
    assert card["status"] == "interrupted" and not (out / ".phi_cls.lock").exists() and not list(out.rglob("*.tmp"))


def _disk_full(mp):
    save = torch.save
    def full(obj, f, *a, **kw):  # what a full disk looks like from torch.save
        if str(f).endswith("optimizer.pt"):
            raise RuntimeError("[enforce fail at inline_container.cc:626] . unexpected pos 1088 vs 1024")
        return save(obj, f, *a, **kw)
    mp.setattr(torch, "save", full)


@SLOW
def test_disk_full_during_a_checkpoint_is_named(tmp_path):
    out = tmp_path / "run"
    proc = here("train", "--mode", "probe", "--out", out, *TINY_FLAGS, "--epochs", "1", env=_env(tmp_path / "tmp"),
                patch=_disk_full)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr + proc.stdout, proc.stderr[-2000:]
    for part in (f"could not write {out / 'checkpoints' / 'probe' / 'checkpoint-'}",
                 "a write error (is the disk full?)", "Free some disk space"):
        assert part in proc.stderr, (part, proc.stderr[-2000:])
    assert "unexpected error" not in proc.stderr
    card = json.loads((out / "run.json").read_text())
    assert card["status"] == "failed" and "could not write" in card["error"] and not (out / ".phi_cls.lock").exists()
    assert not list(out.rglob("*.tmp")) and not left_in(tmp_path / "tmp")


# a killed run resumes to the same result

# 12 optimizer steps an epoch: the kill comes after epoch 1's checkpoint, with epochs 2-3 (about 60% of the run) to go
RESUME_FLAGS = ["--mode", "lora", "--model", "tiny", "--max-train-samples", "96", "--max-eval-samples", "16",
                "--max-length", "256", "--epochs", "3", "--batch-size", "4", "--grad-accum", "2", "--no-progress",
                "--seed", "7"]


def _last_complete_checkpoint(run):
    return last_checkpoint(run / "checkpoints" / "lora")


@SLOW
def test_kill_and_resume_matches_uninterrupted(tmp_path):
    assert here("train", "--out", tmp_path / "ref", *RESUME_FLAGS).returncode == 0
    run = tmp_path / "run"
    proc = subprocess.Popen([sys.executable, "-m", "phi_cls.cli", "train", "--out", str(run), *RESUME_FLAGS], cwd=REPO,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 300
    while proc.poll() is None and not _last_complete_checkpoint(run) and time.time() < deadline: time.sleep(0.02)
    assert proc.poll() is None, "the run ended before it could be killed after its first checkpoint"
    proc.send_signal(signal.SIGKILL); proc.wait()
    assert json.loads((run / "run.json").read_text())["status"] == "running"  # what a kill leaves
    assert not (run / "metrics.json").exists()
    first = _last_complete_checkpoint(run)
    resumed = here("train", "--out", run, *RESUME_FLAGS, "--resume")
    assert resumed.returncode == 0 and f"resuming from {first}" in resumed.stdout
    assert json.loads((run / "run.json").read_text())["status"] == "finished"
    a = pd.read_csv(tmp_path / "ref" / "lora_finetuned_predictions.csv")
    b = pd.read_csv(run / "lora_finetuned_predictions.csv")
    assert a["index"].tolist() == b["index"].tolist()
    np.testing.assert_allclose(a["p(class=1)"], b["p(class=1)"], atol=1e-4)
