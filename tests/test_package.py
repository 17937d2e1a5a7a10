"""The package as a user gets it: `python -m build` makes an sdist and a wheel that pass `twine check`; the wheel holds
the code, the embedded data and the `phi-cls` command, and works installed on its own, away from the source tree."""
import configparser, os, shutil, subprocess, sys, zipfile
from pathlib import Path

import pytest

from conftest import REPO

# What setup.py and MANIFEST.in read (pyproject.toml only if one appears), and the package itself.
BUILD_FILES = ["setup.py", "settings.ini", "MANIFEST.in", "README.md", "LICENSE", "pyproject.toml"]
EMBEDDED = ["GSM8K_LICENSE", "README.md", "gsm8k_pairs.jsonl.gz"]


@pytest.fixture(scope="session")
def dist(tmp_path_factory):
    "sdist and wheel built from a copy of the repository (no build artifacts left in it), without a network build env."
    pytest.importorskip("build", reason="the `build` package (in the [dev] extra) builds the distributions")
    src, out = tmp_path_factory.mktemp("src"), tmp_path_factory.mktemp("dist")
    for name in BUILD_FILES:
        if (REPO / name).exists(): shutil.copy2(REPO / name, src / name)
    shutil.copytree(REPO / "phi_cls", src / "phi_cls", ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    proc = subprocess.run([sys.executable, "-m", "build", "--no-isolation", "--outdir", str(out), str(src)],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert "absent from the `packages` configuration" not in proc.stdout + proc.stderr  # data dirs are listed
    return out


@pytest.fixture(scope="session")
def wheel(dist): return next(dist.glob("phi_cls-*.whl"))


@pytest.fixture(scope="session")
def installed(wheel, tmp_path_factory):
    "The wheel installed into a folder of its own (dependencies come from this environment); the folder and its env."
    site = tmp_path_factory.mktemp("site")
    subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--no-index", "--target", str(site),
                    str(wheel)], check=True, capture_output=True, timeout=300)
    env = {**os.environ, "PYTHONPATH": str(site)}  # only the installed copy: not this checkout
    return site, env


def test_wheel_contents(wheel):
    names = set(zipfile.ZipFile(wheel).namelist())
    modules = {f"phi_cls/{p.name}" for p in (REPO / "phi_cls").glob("*.py")}
    assert modules <= names, sorted(modules - names)
    assert {f"phi_cls/embedded/{n}" for n in EMBEDDED} <= names
    info = next(n for n in names if n.endswith(".dist-info/entry_points.txt"))
    assert "phi-cls = phi_cls.cli:main" in zipfile.ZipFile(wheel).read(info).decode()
    assert not [n for n in names if n.startswith(("tests/", "nbs/", "benchmarks/")) or "__pycache__" in n]


def test_metadata_is_true(wheel):
    "No invented project URL or e-mail address: settings.ini leaves them empty until they exist."
    zf = zipfile.ZipFile(wheel)
    meta = zf.read(next(n for n in zf.namelist() if n.endswith(".dist-info/METADATA"))).decode()
    head = meta.split("\n\n")[0]  # the headers; the README follows
    cfg = configparser.ConfigParser(delimiters=["="])
    cfg.read(REPO / "settings.ini", encoding="utf-8")
    d = cfg["DEFAULT"]
    assert f"Version: {d['version']}" in head and f"Author: {d['author']}" in head
    assert ("Home-page:" in head or "Project-URL:" in head) == bool(d.get("git_url", "").strip())
    assert ("Author-email:" in head) == bool(d.get("author_email", "").strip())
    assert "example.org" not in meta and "github.com/phi-cls" not in meta


def test_twine_check(dist):
    pytest.importorskip("twine", reason="`twine` (in the [dev] extra) checks what PyPI would render")
    files = sorted(map(str, dist.iterdir()))
    assert len(files) == 2  # the sdist and the wheel
    proc = subprocess.run([sys.executable, "-m", "twine", "check", "--strict", *files], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_installed_wheel_runs(installed, tmp_path):
    "The installed copy imports, finds its embedded data, and runs `phi-cls check` and a tiny `phi-cls train`."
    site, env = installed
    where = subprocess.run([sys.executable, "-c", "import phi_cls, phi_cls.data as d; "
                            "print(phi_cls.__file__); print(d.gsm8k_pairs_file())"],
                           cwd=tmp_path, env=env, capture_output=True, text=True, check=True).stdout.split()
    assert all(Path(p).is_relative_to(site) for p in where) and Path(where[1]).is_file(), where
    exe = site / "bin" / "phi-cls"  # the console script pip wrote, as on a user's PATH
    (tmp_path / "s.jsonl").write_text('{"question": "What is 7 x 8?", "solution": "7 x 8 = 54, so it is 54."}\n'
                                      '{"question": "What is 2 + 3?", "solution": "2 + 3 = 5."}\n')
    subprocess.run([str(exe), "check", "--input", "s.jsonl", "--output", "checked.csv"],
                   cwd=tmp_path, env=env, capture_output=True, check=True, timeout=120)
    rows = (tmp_path / "checked.csv").read_text().splitlines()
    assert [r.split(",")[1] for r in rows[1:]] == ["1", "0"], rows
    tiny = ["--mode", "probe", "--model", "tiny", "--data", "gsm8k-pairs", "--max-train-samples", "8",
            "--max-eval-samples", "8", "--max-length", "128", "--epochs", "1", "--no-progress", "--out", "run"]
    proc = subprocess.run([str(exe), "train", *tiny], cwd=tmp_path, env=env, capture_output=True, text=True,
                          timeout=300)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    run = tmp_path / "run"
    assert (run / "probe" / "head.safetensors").is_file() and (run / "probe_baseline_predictions.csv").is_file()
    assert '"status": "finished"' in (run / "run.json").read_text()
