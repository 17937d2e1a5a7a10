"""Shared fixtures: one tiny training run through the CLI, reused by the tests that read its outputs."""
import os, subprocess, sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
TINY_FLAGS = ["--model", "tiny", "--max-train-samples", "24", "--max-eval-samples", "12", "--max-length", "128",
              "--batch-size", "4", "--grad-accum", "2", "--epochs", "2", "--logging-steps", "1", "--no-progress"]


def phi_cls(*args, check=True, **kw):
    "Run the `phi-cls` command in a subprocess, as a user would."
    proc = subprocess.run([sys.executable, "-m", "phi_cls.cli", *map(str, args)], capture_output=True, text=True, cwd=kw.pop("cwd", REPO), **kw)
    if check and proc.returncode != 0:
        raise AssertionError(f"phi-cls {' '.join(map(str, args))} exited {proc.returncode}\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}")
    return proc


@pytest.fixture(scope="session")
def tiny_run(tmp_path_factory):
    "A complete `--mode both` run of the tiny model on CHAMP rows."
    out = tmp_path_factory.mktemp("runs") / "tiny"
    proc = phi_cls("train", "--mode", "both", "--out", out, *TINY_FLAGS)
    (out.parent / "tiny.stdout").write_text(proc.stdout)  # outside the run folder, for the tests of what train prints
    return out
