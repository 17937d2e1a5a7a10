"""Shared by every test file: the tiny training run reused by the tests that read its outputs, and a tiny probe with a
step head trained on planted rows; two ways to run the CLI (in a subprocess, as a user would, or in this process, for
refusals, which need no Python start-up of their own); the check "refused, and nothing on disk changed" that every
bad-input matrix uses; and small makers of CHAMP rows and of planted step-labelled rows.

Tests marked `slow` train a model, need a trained one (the tiny run) or drive a browser, a benchmark or torchrun;
`make test-fast` (`pytest -m "not slow"`) leaves them out, `make test` runs them all."""
import contextlib, hashlib, io, os, random, shutil, subprocess, sys, tempfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
TINY_FLAGS = ["--model", "tiny", "--data", "champ", "--max-train-samples", "24", "--max-eval-samples", "12",
              "--max-length", "128", "--batch-size", "4", "--grad-accum", "2", "--epochs", "2", "--logging-steps", "1",
              "--no-progress"]
PRED_FILES = {"probe": "probe_baseline_predictions.csv", "lora": "lora_finetuned_predictions.csv"}
WRONG = "We need 7 * 8.\n7 * 8 = 54\nSo the answer is 54."  # a solution whose second line the checker flags
SLOW = pytest.mark.slow
SLOW_FIXTURES = {"tiny_run", "q4", "tiny_artifacts", "runs", "steps_probe"}  # fixtures that train: their tests are slow


def pytest_configure(config):
    config.addinivalue_line("markers", "slow: trains a model or needs a trained one, or drives a browser, a benchmark "
                                       "or torchrun; `make test-fast` (-m 'not slow') leaves these out")


def pytest_collection_modifyitems(items):
    for item in items:
        if SLOW_FIXTURES & set(getattr(item, "fixturenames", ())): item.add_marker(SLOW)


# running the CLI

def phi_cls(*args, check=True, **kw):
    "Run the `phi-cls` command in a subprocess, as a user would."
    proc = subprocess.run([sys.executable, "-m", "phi_cls.cli", *map(str, args)], capture_output=True, text=True,
                          cwd=kw.pop("cwd", REPO), **kw)
    if check and proc.returncode != 0:
        raise AssertionError(f"phi-cls {' '.join(map(str, args))} exited {proc.returncode}\n"
                             f"{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}")
    return proc


def phi_cls_here(*args, cwd=None, env=None, patch=None):
    """`phi_cls.cli.main(ARGS)` in this process, answered like `phi_cls(..., check=False)`: returncode, stdout, stderr.
    `env` (a full environment, as for subprocess) sets the variables that differ from ours, TMPDIR also for `tempfile`;
    `patch(monkeypatch)` may change the library for this call. Everything is restored afterwards."""
    from phi_cls.cli import main
    out, err = io.StringIO(), io.StringIO()
    with pytest.MonkeyPatch.context() as mp:
        if cwd is not None: mp.chdir(cwd)
        for k, v in (env or {}).items():
            if os.environ.get(k) != v: mp.setenv(k, v)
        if env and "TMPDIR" in env: mp.setattr(tempfile, "tempdir", env["TMPDIR"])
        if patch: patch(mp)
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            try: code = main([*map(str, args)])
            except SystemExit as e: code = e.code  # argparse's own errors
    return subprocess.CompletedProcess(["phi-cls", *map(str, args)], code, out.getvalue(), err.getvalue())


# "refused, and nothing on disk changed"

def tree(folder) -> dict:
    "Every file and folder under `folder` with the sha256 of its bytes (folders: None), to compare before and after."
    folder = Path(folder)
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest() if p.is_file() else None
            for p in sorted(folder.rglob("*"))}


def left_in(tmp) -> list:
    "What a run left in its temporary folder, besides the (empty) cache folder torch makes there."
    return [p for p in Path(tmp).iterdir() if not (p.name.startswith("torchinductor_") and not any(p.iterdir()))]


def refused(*args, says, watch, cwd=None, env=None, patch=None):
    """Run `phi-cls ARGS` in this process, its temporary files in a folder of their own, and check that it was refused
    as a user should be: exit code 2, one error line on stderr that holds every part of `says`, no traceback, nothing
    under `watch` changed (every file's sha256 before and after) and nothing left in the temporary folder.
    `env` holds environment variables to set besides ours. Returns the answer, for checks of its own."""
    tmp = Path(tempfile.mkdtemp(prefix="phi_cls-test-"))
    try:
        before = tree(watch)
        proc = phi_cls_here(*args, cwd=cwd, env=dict(os.environ, **(env or {}), TMPDIR=str(tmp)), patch=patch)
        assert proc.returncode == 2, (proc.returncode, proc.stderr[-2000:])
        assert "Traceback" not in proc.stderr + proc.stdout, proc.stderr[-2000:]
        errors = [line for line in proc.stderr.splitlines() if ": error: " in line]
        assert len(errors) == 1 and proc.stderr.count("error:") == 1, proc.stderr[-2000:]
        for part in says: assert part in errors[0], (part, proc.stderr[-2000:])
        assert tree(watch) == before
        assert not left_in(tmp)
    finally: shutil.rmtree(tmp, ignore_errors=True)
    return proc


# data

def champ_frame(split, n, columns=("question", "solution", "label", "index")):
    "The first `n` rows of CHAMP's `split`, as a DataFrame."
    from phi_cls.data import load_champ
    return load_champ()[split].to_pandas()[list(columns)].head(n)


def one_csv(folder, frames: dict, name="data.csv"):
    "The frames of `frames` (split -> DataFrame) in one CSV with a `split` column."
    import pandas as pd
    pd.concat([v.assign(split=k) for k, v in frames.items()]).to_csv(folder / name, index=False)
    return folder / name


@pytest.fixture(scope="session")
def tiny_run(tmp_path_factory):
    "A complete `--mode both` run of the tiny model on CHAMP rows."
    out = tmp_path_factory.mktemp("runs") / "tiny"
    proc = phi_cls("train", "--mode", "both", "--out", out, *TINY_FLAGS)
    (out.parent / "tiny.stdout").write_text(proc.stdout)  # outside the run folder, for the tests of what train prints
    return out


def planted(n, seed, start=0):
    """Running sums, one step a line ending with '.'; in a flawed row the first wrong step adds one too many and ends
    with the marker ' not' (one token of the tiny tokenizer) instead (later steps carry the error on without it): a
    signal a step head can learn on that step's last token only (one token earlier, a digit, holds none)."""
    import pandas as pd
    rng, rows = random.Random(seed), []
    for i in range(start, start + n):
        xs, flawed = [rng.randint(2, 9) for _ in range(rng.randint(3, 5))], i % 2 == 1
        first, total, lines = (rng.randrange(len(xs)) if flawed else -1), 0, []
        for k, x in enumerate(xs):
            new = total + x + (k == first)
            lines.append(f"{total} + {x} = {new} not" if k == first else f"{total} + {x} = {new}.")
            total = new
        rows.append(dict(index=i, question=f"Problem {i}: add up {', '.join(map(str, xs))}.",
                         solution="\n".join(lines), label=int(flawed), first_error_step=first))
    return pd.DataFrame(rows)


@pytest.fixture(scope="session")
def steps_probe(tmp_path_factory):
    """A tiny probe with a step head (`steps=True`, with the checker) trained on planted rows, in this process (a few
    seconds): (its classifier folder, the test rows)."""
    from phi_cls.train import TrainConfig, run
    folder = tmp_path_factory.mktemp("steps_probe")
    parts = dict(train=planted(48, 0), validation=planted(16, 1, 100), test=planted(24, 2, 200))
    run(TrainConfig(mode="probe", model="tiny", data=str(one_csv(folder, parts, "planted.csv")), steps=True,
                    checker=True, output_dir=str(folder / "run"), max_length=128, batch_size=4, grad_accum=2, epochs=2,
                    learning_rate=5e-3, progress=False, workers=1))
    return folder / "run" / "probe", parts["test"]
