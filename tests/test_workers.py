"""CPU inference in worker processes: the same bytes as one process, and a worker that dies fails the job with a
message."""
import os, signal, subprocess, sys, time
from pathlib import Path

import pandas as pd
import pytest

from conftest import SLOW, REPO


@pytest.fixture(scope="module")
def tiny_artifacts(tmp_path_factory):
    "One small probe + LoRA run of the tiny model, trained in this process once for every test of this file."
    from phi_cls.config import TrainConfig
    from phi_cls.train import run
    out = tmp_path_factory.mktemp("workers") / "run"
    run(TrainConfig(mode="both", model="tiny", output_dir=str(out), max_train_samples=16, max_eval_samples=4,
                    max_length=96, batch_size=4, grad_accum=1, epochs=1, progress=False, workers=1))
    return out


def _rows(n=13):
    "An odd number of CHAMP rows plus rows of very different lengths (a one-liner and a very long solution)."
    from phi_cls.data import load_champ, training_splits
    test = training_splits(load_champ(), max_train_samples=8, max_eval_samples=n - 2, seed=0)[2].to_pandas()
    rows = test[["index", "question", "solution", "label"]]
    extra = pd.DataFrame({"index": [10_001, 10_002], "question": ["1+1?", "Sum 1..50?"],
                          "solution": ["2", " + ".join(map(str, range(1, 51))) + " = 1275"], "label": [0, 0]})
    return pd.concat([rows, extra], ignore_index=True)


@pytest.mark.parametrize("kind", ["probe", "lora"])
def test_workers_give_the_same_bytes(tiny_artifacts, tmp_path, kind):
    from phi_cls.predict import load_classifier, predict_file
    inp = tmp_path / "in.jsonl"
    rows = _rows()
    assert len(rows) % 2 == 1
    rows.to_json(inp, orient="records", lines=True)
    clf = load_classifier(tiny_artifacts / kind, workers=1)
    predict_file(clf, inp, tmp_path / "one.csv", checker=True, chunk_rows=5, progress=False)
    clf.workers = 2  # three chunks through one pool of two workers
    predict_file(clf, inp, tmp_path / "two.csv", checker=True, chunk_rows=5, progress=False)
    assert (tmp_path / "two.csv").read_bytes() == (tmp_path / "one.csv").read_bytes()
    assert clf._pool is None  # the job's workers are gone


def _workers_of(pid):
    "Worker processes (spawned children, not the resource tracker) of process `pid`."
    found = []
    for d in Path("/proc").iterdir():
        if not d.name.isdigit(): continue
        try:
            stat, cmd = (d / "stat").read_text(), (d / "cmdline").read_bytes()
        except OSError: continue
        if int(stat.rsplit(")", 1)[1].split()[1]) == pid and b"spawn_main" in cmd: found.append(int(d.name))
    return found


def test_killed_worker_fails_the_job(tiny_artifacts, tmp_path):
    inp, out = tmp_path / "in.jsonl", tmp_path / "out.csv"
    many = pd.concat([_rows()] * 40, ignore_index=True).assign(index=lambda d: range(len(d)))
    many.to_json(inp, orient="records", lines=True)
    proc = subprocess.Popen([sys.executable, "-m", "phi_cls.cli", "predict", "--model", tiny_artifacts / "probe",
                             "--input", inp, "--output", out, "--workers", "2", "--no-progress"], cwd=REPO,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 300
    while not (workers := _workers_of(proc.pid)) and proc.poll() is None and time.time() < deadline: time.sleep(0.2)
    assert workers, "no worker process started"
    os.kill(workers[0], signal.SIGKILL)
    _, err = proc.communicate(timeout=300)
    assert proc.returncode == 1 or proc.returncode == 2, err
    assert "inference worker" in err and "killed by signal 9" in err, err
    assert not out.exists() and not Path(str(out) + ".tmp").exists()
    time.sleep(1)
    assert not [p for p in workers[1:]
                if Path(f"/proc/{p}").exists() and "Z" not in Path(f"/proc/{p}/stat").read_text().split()[2]]


@SLOW
def test_script_without_main_guard(tmp_path):
    """A user's script that starts workers at top level (no `if __name__ == '__main__'`) works: the workers do not
    re-run it."""
    script = tmp_path / "score.py"
    script.write_text("import torch\nfrom datasets import Dataset\nfrom phi_cls.model import load_tokenizer\n"
                      "from phi_cls.workers import WorkerPool\n"
                      "tok = load_tokenizer('tiny')\nids = [tok('x ' * n)['input_ids'] for n in (3, 40, 9)]\n"
                      "ds = Dataset.from_dict({'input_ids': ids, 'length': [len(i) for i in ids]})\n"
                      "with WorkerPool(dict(model='tiny', precision='fp32'), 1) as pool:\n"
                      "    print('rows', len(pool.features(ds, tok.pad_token_id, 2, progress=False)))\n")
    proc = subprocess.run([sys.executable, script], capture_output=True, text=True, cwd=tmp_path, timeout=600,
                          env=dict(os.environ, PYTHONPATH=f"{REPO}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"))
    assert proc.returncode == 0 and proc.stdout.count("rows 3") == 1, proc.stderr[-2000:]


def test_import_sets_strict_mkl_reproducibility():
    """fp32 products must not depend on the thread count, or workers (one thread) would differ from one process in the
    last bits."""
    code = "import os, phi_cls; print(os.environ['MKL_CBWR'])"
    env = {k: v for k, v in os.environ.items() if k != "MKL_CBWR"}
    default = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env)
    assert default.stdout.strip() == "AUTO,STRICT"
    mine = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          env=dict(env, MKL_CBWR="COMPATIBLE"))
    assert mine.stdout.strip() == "COMPATIBLE"  # a value the user set wins
