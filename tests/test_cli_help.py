"""`phi-cls --help` and `phi-cls <cmd> --help` answer without loading PyTorch, transformers or pandas (which take seconds)."""
import subprocess, sys

import pytest

from conftest import REPO

HEAVY = {"torch", "transformers", "pandas", "datasets", "numpy"}


def _imported(importtime_log: str) -> set:
    "Top-level package names from the `-X importtime` log on stderr."
    return {line.split("|")[-1].strip().split(".")[0] for line in importtime_log.splitlines() if line.startswith("import time:")}


@pytest.mark.parametrize("args", [["--help"], ["train", "--help"], ["predict", "--help"], ["check", "--help"], ["serve", "--help"]])
def test_help_imports_nothing_heavy(args):
    proc = subprocess.run([sys.executable, "-X", "importtime", "-m", "phi_cls.cli", *args], capture_output=True, text=True, cwd=REPO)
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
