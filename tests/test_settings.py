"""Bad settings: every flag a user can get wrong is refused before anything is written, with one line that names the
setting, the bad value and what is allowed. The CLI runs in this process; the real command's answer is in test_cli.py
and the notebook's (papermill parameters) in test_notebooks.py."""
import pytest

from conftest import REPO, TINY_FLAGS, refused


@pytest.mark.parametrize("flags, message", [
    # not allowed at all
    (["--mode", "lorra"], "mode='lorra' is not allowed; use one of probe, lora, both"),
    (["--mode", "fast"], "mode='fast' is not allowed"),
    (["--optim", "lion"], "optim='lion' is not allowed"),  # 8-bit optimizers run on a CPU with bitsandbytes
    (["--quantize", "8bit"], "quantize='8bit' is not allowed; use one of auto, 4bit, none"),  # 4bit runs on a CPU now
    (["--workers", "many"], "workers='many' is not allowed"),
    (["--workers", "0"], "workers=0 is not allowed"),
    # numbers out of range
    (["--epochs", "0"], "epochs=0.0 must be a positive number"),
    (["--epochs", "-2"], "epochs=-2.0 must be a positive number"),
    (["--batch-size", "0"], "batch_size=0 must be a positive number"),
    (["--learning-rate", "0"], "learning_rate=0.0 must be a positive number"),
    (["--seed", "-1"], "seed=-1 must not be negative"),
    (["--max-length", "20"], "max_length=20 is too small"),
    # not finite, or far too large
    (["--learning-rate", "inf"], "learning_rate=inf is not a finite number"),
    (["--weight-decay", "nan"], "weight_decay=nan is not a finite number"),
    (["--epochs", "inf"], "epochs=inf is not a finite number"),
    (["--epochs", "1e9"], "epochs=1000000000.0 is more than 1000, the largest value allowed"),
    (["--max-length", "1000000"], "max_length=1000000 is more than 131072"),
    (["--lora-r", "5000"], "lora_r=5000 is more than 1024"),
    (["--batch-size", "100000"], "batch_size=100000 is more than 4096"),
    # what this machine, the model or the data allows
    (["--max-length", "5000"], "max_length=5000 is more than model 'tiny' can read (4096 positions)"),
    (["--device", "cuda"], "device='cuda' but this machine has no CUDA GPU"),
    (["--data", "no/such/data.csv"], "data='no/such/data.csv': no such file"),
    (["--model", "./no-such-model"], "model folder './no-such-model' does not exist"),
    (["--model", "nosuchorg/nosuchmodel"],
     "model 'nosuchorg/nosuchmodel' is not a local folder and not in the Hugging Face cache"),
    (["--model", str(REPO / "nbs")], "has no config.json, so it is not a transformers model"),
])
def test_bad_train_setting(tmp_path, flags, message):
    refused("train", "--out", tmp_path / "run", *TINY_FLAGS, *flags, says=[message], watch=tmp_path)


def test_bad_predict_setting(tiny_run, tmp_path):
    (tmp_path / "in.csv").write_text("question,solution\nq,s\n")
    refused("predict", "--model", tiny_run / "lora", "--input", tmp_path / "in.csv", "--output", tmp_path / "out.csv",
            "--no-progress", "--threshold", "2", says=["threshold=2.0 must be between 0 and 1"], watch=tmp_path)
