"""The `phi-cls` command itself: `--help` and parsing answer without loading PyTorch, transformers or pandas (which take
seconds), and the real process answers bad input with exit code 2 and one line on stderr (`--debug`: the traceback)."""
import subprocess, sys

import pytest

from conftest import REPO, TINY_FLAGS, phi_cls

HEAVY = {"torch", "transformers", "pandas", "datasets", "numpy"}


def _imported(importtime_log: str) -> set:
    "Top-level package names from the `-X importtime` log on stderr."
    return {line.split("|")[-1].strip().split(".")[0] for line in importtime_log.splitlines()
            if line.startswith("import time:")}


@pytest.mark.parametrize("args", [["--help"], ["train", "--help"], ["predict", "--help"], ["check", "--help"],
                                  ["serve", "--help"], ["evaluate", "--help"]])
def test_help_imports_nothing_heavy(args):
    proc = subprocess.run([sys.executable, "-X", "importtime", "-m", "phi_cls.cli", *args], capture_output=True,
                          text=True, cwd=REPO)
    assert proc.returncode == 0 and "usage: phi-cls" in proc.stdout, proc.stderr[-2000:]
    imported = _imported(proc.stderr)
    assert "phi_cls" in imported  # the log is read right
    assert not imported & HEAVY, sorted(imported & HEAVY)


def test_parsing_a_train_command_imports_nothing_heavy():
    code = ("import sys; from phi_cls.cli import build_parser, config_from_args; "
            "cfg = config_from_args(build_parser().parse_args(['train', '--preset', 'demo', '--epochs', '1'])); "
            "print(cfg.max_train_samples, cfg.epochs, sorted(set(sys.modules) & %r))" % HEAVY)
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO)
    assert proc.stdout.strip() == "96 1.0 []", proc.stderr[-2000:]  # the preset, the flag over it, and no heavy module


def test_real_command_answers_bad_input_on_stderr(tmp_path):
    "`python -m phi_cls.cli train` itself: exit code 2, the message on stderr only, no traceback, no run folder."
    proc = phi_cls("train", "--out", tmp_path / "run", *TINY_FLAGS, "--mode", "lorra", check=False)
    assert proc.returncode == 2, proc.stderr[-2000:]
    assert "mode='lorra' is not allowed; use one of probe, lora, both" in proc.stderr, proc.stderr[-2000:]
    assert "lorra" not in proc.stdout and "Traceback" not in proc.stderr and not (tmp_path / "run").exists()


def test_debug_shows_traceback(tmp_path):
    proc = phi_cls("train", "--mode", "nope", "--debug", check=False)
    assert proc.returncode != 0 and "Traceback" in proc.stderr
