"""Reloading a trained classifier reproduces the run's predictions (a head that reloads random would not)."""
import numpy as np
import pandas as pd
import pytest

import phi_cls
from phi_cls.data import load_champ, training_splits

CSV = {"probe": "probe_baseline_predictions.csv", "lora": "lora_finetuned_predictions.csv"}


@pytest.fixture(scope="module")
def test_rows():
    return training_splits(load_champ(), max_train_samples=24, max_eval_samples=12, seed=42)[2].to_pandas()


@pytest.mark.parametrize("kind", ["probe", "lora"])
def test_round_trip_reproduces_csv(tiny_run, test_rows, kind):
    clf = phi_cls.load_classifier(tiny_run / kind)
    saved = pd.read_csv(tiny_run / CSV[kind])
    assert saved["index"].tolist() == test_rows["index"].tolist()
    probs = clf.predict_proba(test_rows["question"].tolist(), test_rows["solution"].tolist())
    assert probs.shape == (12, 2)
    np.testing.assert_allclose(probs, saved[["p(class=0)", "p(class=1)"]].values, atol=1e-5)


def test_zip_and_run_folder_load(tiny_run, test_rows):
    by_zip = phi_cls.load_classifier(tiny_run / "artifacts.zip", kind="probe")
    by_run = phi_cls.load_classifier(tiny_run)  # a run folder: LoRA by default
    assert by_zip.info["kind"] == "probe" and by_run.info["kind"] == "lora"
    saved = pd.read_csv(tiny_run / CSV["probe"])
    np.testing.assert_allclose(by_zip.predict_proba(test_rows)[:, 1], saved["p(class=1)"], atol=1e-5)


def test_head_is_not_random_after_reload(tiny_run, test_rows):
    "Two loads give the same numbers; a freshly initialised head would differ between loads."
    a = phi_cls.load_classifier(tiny_run / "lora").predict_proba(test_rows.head(3))
    b = phi_cls.load_classifier(tiny_run / "lora").predict_proba(test_rows.head(3))
    np.testing.assert_array_equal(a, b)
