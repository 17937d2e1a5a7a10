"""The trained classifier on disk: what an artifact holds, that it reloads to the run's own predictions (a head that
reloads random would not), and the artifact matrix: damaged, dangerous or foreign artifacts are refused by
`load_classifier`, `phi-cls predict` and `export`, with the file and the field named, and nothing written.
Everything here reads the session's tiny run."""
import json, re, shutil, zipfile

import numpy as np
import pandas as pd
import pytest
import torch
from safetensors import safe_open
from safetensors.torch import load_file, save_file

import phi_cls
from conftest import PRED_FILES, refused, tree
from phi_cls.data import load_champ, training_splits
from phi_cls.export import export
from phi_cls.model import ModelError


@pytest.fixture(scope="module")
def test_rows():
    return training_splits(load_champ(), max_train_samples=24, max_eval_samples=12, seed=42)[2].to_pandas()


# what an artifact holds

def test_zip_holds_artifacts_not_checkpoints(tiny_run):
    names = set(zipfile.ZipFile(tiny_run / "artifacts.zip").namelist())
    assert {"metrics.json", "config.json", PRED_FILES["probe"], PRED_FILES["lora"], "probe/head.safetensors",
            "lora/adapter/adapter_model.safetensors", "lora/classifier.json"} <= names
    assert not any(n.startswith("checkpoints") for n in names)


def test_artifacts_hold_no_backbone_copy(tiny_run):
    "Only the head and the adapter are saved: no model.safetensors, no pickles, nothing near the backbone's size."
    assert not list(tiny_run.glob("probe/model*")) and not list(tiny_run.glob("lora/model*"))
    assert not list(tiny_run.rglob("*.bin")) or all("checkpoints" in str(p) for p in tiny_run.rglob("*.bin"))
    with safe_open(tiny_run / "lora" / "adapter" / "adapter_model.safetensors", "pt") as f:
        keys = list(f.keys())
    assert keys and all("lora_" in k for k in keys), keys[:5]
    assert not any("head" in k for k in keys)  # LoRA never wraps the head (peft#2027)


# it reloads to the run's predictions

@pytest.mark.parametrize("kind", ["probe", "lora"])
def test_round_trip_reproduces_csv(tiny_run, test_rows, kind):
    clf = phi_cls.load_classifier(tiny_run / kind)
    saved = pd.read_csv(tiny_run / PRED_FILES[kind])
    assert saved["index"].tolist() == test_rows["index"].tolist()
    probs = clf.predict_proba(test_rows["question"].tolist(), test_rows["solution"].tolist())
    assert probs.shape == (12, 2)
    np.testing.assert_allclose(probs, saved[["p(class=0)", "p(class=1)"]].values, atol=1e-5)


def test_zip_and_run_folder_load(tiny_run, test_rows):
    by_zip = phi_cls.load_classifier(tiny_run / "artifacts.zip", kind="probe")
    by_run = phi_cls.load_classifier(tiny_run)  # a run folder: LoRA by default
    assert by_zip.info["kind"] == "probe" and by_run.info["kind"] == "lora"
    saved = pd.read_csv(tiny_run / PRED_FILES["probe"])
    np.testing.assert_allclose(by_zip.predict_proba(test_rows)[:, 1], saved["p(class=1)"], atol=1e-5)


def test_head_is_not_random_after_reload(tiny_run, test_rows):
    "Two loads give the same numbers; a freshly initialised head would differ between loads."
    a = phi_cls.load_classifier(tiny_run / "lora").predict_proba(test_rows.head(3))
    b = phi_cls.load_classifier(tiny_run / "lora").predict_proba(test_rows.head(3))
    np.testing.assert_array_equal(a, b)


# the artifact matrix

def _truncate(path, keep=50):
    path.write_bytes(path.read_bytes()[:keep])


def _auto_map(art):
    config = json.loads((art / "tokenizer_config.json").read_text())
    config.update(tokenizer_class="EvilTokenizer", auto_map={"AutoTokenizer": ["evil.EvilTokenizer", None]})
    (art / "tokenizer_config.json").write_text(json.dumps(config))


def _evil_py(art):
    "A code file that, if it ever ran, would leave ran.txt beside the artifact."
    (art / "evil.py").write_text(f"open({str(art.parent / 'ran.txt')!r}, 'w').write('ran')\n"
                                 "from transformers import PreTrainedTokenizerFast as EvilTokenizer\n")


def _edit_info(art, change):
    info = json.loads((art / "classifier.json").read_text())
    change(info)
    (art / "classifier.json").write_text(json.dumps(info))


def _nan_head(art):
    head = load_file(art / "head.safetensors")  # heads are bias-free
    save_file({k: v * float("nan") if k == "weight" else v for k, v in head.items()}, art / "head.safetensors")


def _zip(path, entries: dict):
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as z:
        for name, data in entries.items(): z.writestr(name, data)
    return path


def _damaged(kind, damage):
    "An artifact of the tiny run's `kind` (probe, lora or zip: its artifacts.zip), copied to `tmp` and damaged there."
    def make(tiny_run, tmp):
        art = tmp / ("a.zip" if kind == "zip" else "art")
        if kind == "zip": shutil.copy(tiny_run / "artifacts.zip", art)
        else: shutil.copytree(tiny_run / kind, art)
        damage(art)
        return art
    return make


def _made(make):
    "An artifact `make(tmp)` writes from nothing (a zip built by hand)."
    return lambda tiny_run, tmp: make(tmp / "a.zip")


def _case(entry, artifact, *says, id, load_kw=None, limit=None):
    return pytest.param(entry, artifact, says, load_kw or {}, limit, id=f"{entry}-{id}")


BAD_ARTIFACTS = [
    # load_classifier: the artifact's own files
    _case("load", _damaged("lora", lambda a: (a / "head.safetensors").unlink()), "head.safetensors is missing",
          id="head-missing"),
    _case("load", _damaged("lora", lambda a: _truncate(a / "head.safetensors")), "incomplete or corrupted",
          id="head-truncated"),
    _case("load", _damaged("lora", lambda a: _truncate(a / "adapter" / "adapter_model.safetensors", 200)),
          "could not be loaded", id="adapter-truncated"),
    _case("load", _damaged("lora", lambda a: (a / "adapter" / "adapter_model.safetensors").unlink()),
          "adapter/adapter_model.safetensors is missing", id="adapter-missing"),
    _case("load", _damaged("lora", lambda a: (a / "classifier.json").write_text("{not json")),
          "classifier.json is corrupted", id="classifier-json-not-json"),
    _case("load", _damaged("zip", lambda a: _truncate(a, 1000)), "not a readable zip file", id="zip-truncated"),
    _case("load", _damaged("lora", lambda a: None), "trained on a different backbone", id="other-backbone",
          load_kw=dict(base_model="embedded")),
    # phi-cls predict: code inside an artifact is never run, and never asked about
    _case("predict", _damaged("probe", _auto_map),
          "tokenizer_config.json has an 'auto_map', which asks transformers to run custom code", "never runs code",
          id="auto-map"),
    _case("predict", _damaged("probe", lambda a: (_auto_map(a), _evil_py(a))), "holds a code file (evil.py)",
          "never runs code", id="code-file"),
    _case("predict", _damaged("probe", lambda a: torch.save({"weight": torch.zeros(2, 64)}, a / "pytorch_model.bin")),
          "holds pytorch_model.bin, a weights format that can run code", "never runs code", id="pickle"),
    # zip bombs are not extracted
    _case("predict", _made(lambda p: _zip(p, {"probe/classifier.json": "{}",
                                              "probe/zeros.safetensors": bytes(16 * 2**20)})),
          "{art}", "has an entry 'probe/zeros.safetensors' that expands", "not extracted", id="zip-expands"),
    _case("predict", _made(lambda p: _zip(p, {f"probe/{i}.json": "" for i in range(10_001)})),
          "{art}", "has 10,001 entries, more than 10,000", "not extracted", id="zip-entries"),
    _case("predict", _made(lambda p: _zip(p, {"probe/classifier.json": "{}", "../../evil.json": "{}"})),
          "{art}", "entry named '../../evil.json', which points outside", "not extracted", id="zip-outside"),
    _case("predict", _damaged("zip", lambda a: None), "{art}", "MiB, more than 0.1 MiB", "not extracted",
          id="zip-too-big", limit=100_000),  # a small MAX_ZIP_BYTES
    # damaged classifier.json names the file and the field
    _case("predict", _damaged("lora", lambda a: _edit_info(a, lambda info: info.pop("backbone"))),
          "{art}/classifier.json", "classifier.json has no field 'backbone'", id="no-backbone-field"),
    _case("predict", _damaged("lora", lambda a: _edit_info(a, lambda info: info.update(max_length="abc"))),
          "{art}/classifier.json", "classifier.json: field 'max_length' is 'abc'; it must be a positive integer",
          id="max-length-field"),
    _case("predict", _damaged("lora", lambda a: _edit_info(
        a, lambda info: info.update(backbone=dict(info["backbone"], hidden_size="64")))),
          "{art}/classifier.json", "classifier.json: field 'backbone' is", id="backbone-field"),
    # weights that make NaN
    _case("predict", _damaged("probe", _nan_head),
          "predicting gave NaN or infinite probabilities for 3 of 3 rows (rows [0, 1, 2])", id="nan-weights"),
    _case("predict", lambda tiny_run, tmp: tmp / "nope", "does not exist", id="missing"),
    # export: HF's classes pool the final layer's last token
    _case("export", _damaged("probe", lambda a: _edit_info(a, lambda info: info.update(layer=1))),
          "reads layer 1 of", "train with probe_layer=last and pooling=last", id="middle-layer"),
    _case("export", _damaged("probe", lambda a: _edit_info(a, lambda info: info.update(pooling="mean"))),
          "pooling='mean'", "train with probe_layer=last and pooling=last", id="mean-pooling"),
]


@pytest.mark.parametrize("entry, artifact, says, load_kw, limit", BAD_ARTIFACTS)
def test_bad_artifact(tiny_run, tmp_path, entry, artifact, says, load_kw, limit):
    "Refused with the file and the problem named; nothing written, nothing extracted, no code run, no question asked."
    art = artifact(tiny_run, tmp_path)
    if entry == "predict":
        pd.DataFrame({"index": [1, 2, 3], "question": ["q1", "q2", "q3"], "solution": ["s1", "s2", "s3"]}).to_csv(
            tmp_path / "in.csv", index=False)
        kind = ["--kind", "probe"] if art.suffix == ".zip" else []
        patch = (lambda mp: mp.setattr("phi_cls.artifact.MAX_ZIP_BYTES", limit)) if limit else None
        proc = refused("predict", "--model", art, *kind, "--input", tmp_path / "in.csv", "--output",
                       tmp_path / "out.csv", "--no-progress", says=[s.format(art=art) for s in says], watch=tmp_path,
                       patch=patch)
        assert "[y/N]" not in proc.stdout + proc.stderr  # a prompt would read pytest's stdin, which refuses to be read
        assert not (tmp_path / "ran.txt").exists()
        return
    before = tree(tmp_path)
    with pytest.raises(ModelError, match=".*".join(map(re.escape, says))):
        if entry == "load": phi_cls.load_classifier(art, **load_kw)
        else: export(art, tmp_path / "hf")
    assert tree(tmp_path) == before  # export leaves no folder behind
