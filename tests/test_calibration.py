"""Decisions fitted on validation (issue 12): threshold, temperature, best epoch, recorded where a user looks."""
import json

import numpy as np
import pandas as pd
import pytest
from safetensors.torch import load_file

CSV = {"probe": "probe_baseline_predictions.csv", "lora": "lora_finetuned_predictions.csv"}


@pytest.mark.parametrize("kind", ["probe", "lora"])
def test_decisions_fitted_on_validation_and_recorded(tiny_run, kind):
    info = json.loads((tiny_run / kind / "classifier.json").read_text())
    metrics = json.loads((tiny_run / "metrics.json").read_text())[kind]
    assert info["decision"]["n_validation"] == 12 and info["decision"]["fitted"].startswith("on 12 validation rows")
    assert 0 <= info["threshold"] <= 1 and info["temperature"] > 0
    assert metrics["threshold"] == info["threshold"] and metrics["decision"]["temperature"] == info["temperature"]
    preds = pd.read_csv(tiny_run / CSV[kind])  # calibrated probabilities, scored at the fitted threshold
    called = preds["p(class=1)"] >= info["threshold"]
    assert metrics["accuracy"] == pytest.approx((called == preds["true_label"]).mean())
    assert metrics["raw"]["threshold"] == 0.5 and set(metrics["ece"]) == {"test", "validation"}
    assert all(0 <= v <= 1 for split in metrics["ece"].values() for v in (split["before"], split["after"]))


def test_best_epoch_is_the_saved_one(tiny_run):
    card = json.loads((tiny_run / "run.json").read_text())
    best = card["best_epoch"]["lora"]
    assert best["epoch"] in (1.0, 2.0) and best["eval_loss"] > 0
    kept = load_file(tiny_run / "checkpoints" / "lora" / f"checkpoint-{best['step']}" / "model.safetensors")
    saved = load_file(tiny_run / "lora" / "head.safetensors")
    np.testing.assert_array_equal(kept["head.weight"].float().numpy(), saved["weight"].numpy())
    assert card["class_weights"] == "none (all 1)" or len(card["class_weights"]) == 2
