"""More than two classes end to end (`--labels types` on gsm8k-pairs, the tiny backbone): the head, the files, the
metrics, predict, evaluate, export (pipeline parity), serve; and the refusals of labels that are no class."""
import json
import shutil

import numpy as np
import pandas as pd
import pytest
import torch
from safetensors.torch import load_file

from conftest import TINY_FLAGS, phi_cls, phi_cls_here
from phi_cls.artifact import ArtifactError, read_classifier_info
from phi_cls.config import TrainConfig, config_record
from phi_cls.data import DataError, load_data
from phi_cls.predict import load_classifier

TYPES = ("correct", "computational", "conceptual")
FLAGS = [f for f in TINY_FLAGS if f not in ("--data", "champ")]


@pytest.fixture(scope="module")
def run3(tmp_path_factory):
    "A `--mode both --checker` run with three classes on gsm8k-pairs rows."
    out = tmp_path_factory.mktemp("k") / "run"
    phi_cls("train", "--mode", "both", "--data", "gsm8k-pairs", "--labels", "types", "--checker", "--out", out, *FLAGS)
    return out


@pytest.fixture(scope="module")
def rows3(tmp_path_factory):
    "30 gsm8k-pairs test rows labelled with class names (correct / computational / conceptual)."
    df = load_data("gsm8k-pairs")["test"].to_pandas().head(30)
    df = df.assign(label=df.error_type.where(df.label == 1, "correct"))
    path = tmp_path_factory.mktemp("rows") / "rows3.csv"
    df.to_csv(path, index=False)
    return path


def test_binary_stays_the_default():
    cfg = TrainConfig()
    assert (cfg.labels, cfg.num_labels, cfg.id2label) == ("binary", 2, {0: "correct", 1: "flawed"})
    assert "labels" not in config_record(cfg)  # a binary run's config.json and run card are what they were


def test_head_files_and_metrics_agree(run3):
    for mode in ("probe", "lora"):
        info = read_classifier_info(run3 / mode)
        assert info["labels"] == {"0": "correct", "1": "computational", "2": "conceptual"}
        assert load_file(run3 / mode / "head.safetensors")["weight"].shape[0] == 3
        pred = pd.read_csv(run3 / f"{'probe_baseline' if mode == 'probe' else 'lora_finetuned'}_predictions.csv")
        assert list(pred.columns) == ["index", "true_label", "p(class=0)", "p(class=1)", "p(class=2)"]
        assert np.allclose(pred.iloc[:, 2:].sum(axis=1), 1) and set(pred.true_label) <= {0, 1, 2}
        m = json.loads((run3 / "metrics.json").read_text())[mode]
        assert m["classes"] == list(TYPES) and set(m["per_class"]) == set(TYPES)
        cm = np.array(m["confusion_matrix"])
        assert cm.shape == (3, 3) and cm.sum() == len(pred)
        assert cm.sum(1).tolist() == [int((pred.true_label == j).sum()) for j in range(3)]  # rows are the truth
        assert m["binary"]["n"] == len(pred) and m["binary"]["confusion_matrix"][0][0] == cm[0, 0]
        for name in ("checker", "hybrid"): assert m[name]["classes"] == list(TYPES)
        hyb = pd.read_csv(run3 / f"{mode}_hybrid_predictions.csv")
        proven = (hyb.decided_by == "checker") & (hyb.label != 0)
        assert (hyb.label[proven] == 1).all()  # a proven arithmetic error is computational
    config = json.loads((run3 / "config.json").read_text())["config"]
    assert config["labels"] == "types"


def test_predict_evaluate_serve(run3, rows3, tmp_path):
    proc = phi_cls("predict", "--model", run3 / "lora", "--input", rows3, "--checker", "--output", tmp_path / "p.csv",
                   "--no-progress")
    assert "macro-F1" in proc.stdout and "recall correct" in proc.stdout
    out = pd.read_csv(tmp_path / "p.csv")
    ours = pd.read_csv(rows3)
    assert out.true_label.tolist() == [TYPES.index(v) for v in ours.label]  # names read as class numbers
    assert {"p(class=2)", "decided_by"} <= set(out.columns) and set(out.label) <= {0, 1, 2}
    phi_cls("evaluate", "--model", run3 / "probe", "--input", rows3, "--out", tmp_path / "ev", "--no-progress")
    m = json.loads((tmp_path / "ev" / "metrics.json").read_text())
    assert np.array(m["probe"]["confusion_matrix"]).shape == (3, 3)
    assert set(m["baselines"]["results"]["tfidf"]["per_class"]) == set(TYPES)
    assert (tmp_path / "ev" / "figures" / "probe_confusion.png").exists()
    from phi_cls.serve import EXAMPLE_ERROR, classify_one
    clf = load_classifier(run3 / "lora", device="cpu")
    r = classify_one(clf, *EXAMPLE_ERROR)
    assert r["label"] in TYPES and set(r["probabilities"]) == set(TYPES)
    assert r["decided_by"] != "checker" or r["label"] == "computational"


def test_export_has_three_labels_and_pipeline_parity(run3, tmp_path):
    from phi_cls.export import export
    from transformers import pipeline
    folder = export(run3, tmp_path / "hf", kind="lora")
    config = json.loads((folder / "config.json").read_text())
    assert config["id2label"] == {"0": "correct", "1": "computational", "2": "conceptual"}
    clf = load_classifier(run3, kind="lora", device="cpu", precision="fp32")
    test = load_data("gsm8k-pairs")["test"]
    questions, solutions = list(test["question"][:4]), list(test["solution"][:4])
    ours = clf.predict_proba(questions, solutions)
    ns = {}
    exec((folder / "phi_cls_prompt.py").read_text(), ns)
    pipe = pipeline("text-classification", model=str(folder), top_k=None)
    texts = [ns["build_prompt"](q, s, pipe.tokenizer) for q, s in zip(questions, solutions)]
    theirs = np.array([[{r["label"]: r["score"] for r in o}[c] for c in TYPES] for o in pipe(texts, batch_size=2)])
    assert np.abs(theirs - ours).max() < 1e-5


def test_unknown_label_names_file_column_row_and_value(tmp_path):
    df = load_data("gsm8k-pairs")["test"].to_pandas().head(6)[["question", "solution", "label"]]
    df = df.assign(label=["correct", "computational", "conceptual", "correct", "typo", "conceptual"])
    folder = tmp_path / "data"
    folder.mkdir()
    for split in ("train", "test"): df.to_csv(folder / f"{split}.csv", index=False)
    proc = phi_cls_here("train", "--data", folder, "--labels", "types", "--out", tmp_path / "out", *FLAGS)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert "train.csv, split 'train', column 'label'" in proc.stderr and "row 4 ('typo')" in proc.stderr
    assert not (tmp_path / "out").exists()


def test_refused_label_settings(tmp_path):
    proc = phi_cls_here("train", "--labels", "computational,correct", "--out", tmp_path / "o", *FLAGS)
    assert proc.returncode == 2 and "class 0 must be 'correct'" in proc.stderr
    with pytest.raises(DataError, match="no row of class conceptual"):  # CHAMP records no kind of error
        from phi_cls.data import training_splits
        training_splits(load_data("champ", classes=TYPES), classes=TYPES)


def test_artifact_whose_classes_disagree_with_its_head(run3, tmp_path):
    art = tmp_path / "probe"
    shutil.copytree(run3 / "probe", art)
    info = json.loads((art / "classifier.json").read_text())
    (art / "classifier.json").write_text(json.dumps(dict(info, labels={"0": "correct", "1": "flawed"})))
    with pytest.raises(ArtifactError, match="has 3 outputs, but classifier.json names 2 classes"):
        load_classifier(art, device="cpu")
    (art / "classifier.json").write_text(json.dumps(dict(info, labels={"0": "flawed", "1": "correct", "2": "x"})))
    with pytest.raises(ArtifactError, match="field 'labels'"):
        load_classifier(art, device="cpu")


def test_class_weights_have_k_entries():
    from phi_cls.trainer import loss_weights
    w = loss_weights(TrainConfig(labels="types"), torch.tensor([0, 0, 0, 0, 1, 2]).tolist())
    assert w == pytest.approx([0.5, 2.0, 2.0])


def test_papermill_notebook_with_labels_types(tmp_path):
    "nbs/train.ipynb with `-p labels types`: a three-class run folder, its figures, no error in the notebook."
    import subprocess, sys
    from pathlib import Path
    from conftest import REPO
    args = ["-p", "labels", "types", "-p", "mode", "probe", "-p", "output_dir", tmp_path, "-p", "model", "tiny",
            "-p", "max_train_samples", "48", "-p", "max_eval_samples", "12", "-p", "max_length", "128"]
    proc = subprocess.run([str(Path(sys.executable).parent / "papermill"), "nbs/train.ipynb", str(tmp_path / "o.ipynb"),
                           "--no-progress-bar", *map(str, args)], capture_output=True, text=True, cwd=REPO)
    assert proc.returncode == 0, proc.stderr[-3000:]
    m = json.loads((tmp_path / "probe" / "metrics.json").read_text())
    assert m["probe"]["classes"] == list(TYPES) and np.array(m["probe"]["confusion_matrix"]).shape == (3, 3)
    assert (tmp_path / "probe" / "figures" / "probe_roc.png").exists()


def test_quality_types_table():
    "benchmarks/quality.py --types: the K-class row of each signal beside its binary view and the binary run's."
    import importlib.util
    from conftest import REPO
    spec = importlib.util.spec_from_file_location("quality", REPO / "benchmarks" / "quality.py")
    quality = importlib.util.module_from_spec(spec); spec.loader.exec_module(quality)
    view = dict(balanced_accuracy=0.6, auroc=0.65, intervals=dict(balanced_accuracy=[0.5, 0.7]))
    k = dict(accuracy=0.5, balanced_accuracy=0.45, macro_f1=0.4, auroc=0.55, n=9, binary=view,
             intervals=dict(balanced_accuracy=[0.3, 0.6]),
             per_class={c: dict(recall=r) for c, r in zip(TYPES, (0.8, 0.3, 0.25))})
    b = dict(accuracy=0.6, balanced_accuracy=0.62, auroc=0.66, intervals=dict(balanced_accuracy=[0.52, 0.72]))
    tb = dict(baseline="TF-IDF", **k)
    df = quality.types_frame({"probe": k, "baselines": {"results": {"tfidf": tb}}},
                             {"probe": b, "baselines": {"results": {"tfidf": dict(b, baseline="TF-IDF")}}})
    assert df.signal.tolist() == ["TF-IDF", "probe"]
    row = df.set_index("signal").loc["probe"]
    assert (row["recall computational"], row["binary_view_balanced_accuracy"], row["binary_run_auroc"]) == (
        0.3, 0.6, 0.66)
    md = quality.types_markdown(df)
    assert ("| probe | 0.500 | 0.450 (0.30-0.60) | 0.400 | 0.800 | 0.300 | 0.250 | 0.550 | 0.600 (0.50-0.70) | 0.650 "
            "| 0.620 (0.52-0.72) | 0.660 |") in md
    assert quality.types_settings(quality.parse(["--types"]), "types")["labels"] == "types"
