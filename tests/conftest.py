"""Shared fixtures: one tiny training run through the CLI, reused by the tests that read its outputs; and two ways to run
the CLI: in a subprocess, as a user would, or in this process (for refusals, which need no Python start-up of their own)."""
import contextlib, io, os, subprocess, sys, tempfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
TINY_FLAGS = ["--model", "tiny", "--data", "champ", "--max-train-samples", "24", "--max-eval-samples", "12", "--max-length", "128",
              "--batch-size", "4", "--grad-accum", "2", "--epochs", "2", "--logging-steps", "1", "--no-progress"]


def phi_cls(*args, check=True, **kw):
    "Run the `phi-cls` command in a subprocess, as a user would."
    proc = subprocess.run([sys.executable, "-m", "phi_cls.cli", *map(str, args)], capture_output=True, text=True, cwd=kw.pop("cwd", REPO), **kw)
    if check and proc.returncode != 0:
        raise AssertionError(f"phi-cls {' '.join(map(str, args))} exited {proc.returncode}\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}")
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


@pytest.fixture(scope="session")
def tiny_run(tmp_path_factory):
    "A complete `--mode both` run of the tiny model on CHAMP rows."
    out = tmp_path_factory.mktemp("runs") / "tiny"
    proc = phi_cls("train", "--mode", "both", "--out", out, *TINY_FLAGS)
    (out.parent / "tiny.stdout").write_text(proc.stdout)  # outside the run folder, for the tests of what train prints
    return out
