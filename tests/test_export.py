"""`phi-cls export`: the Hugging Face folder of a trained classifier loads without phi_cls and gives its p(flawed);
what export refuses besides damaged artifacts (those: test_artifacts.py's matrix)."""
import json, os, shutil, subprocess, sys, textwrap
from pathlib import Path

import pytest
import torch
import yaml
from safetensors.torch import load_file, save_file

from conftest import SLOW, phi_cls, phi_cls_here
from phi_cls.data import PROMPT, load_champ
from phi_cls.export import export
from phi_cls.model import ModelError
from phi_cls.predict import load_classifier

TOL = 1e-5  # fp32; measured on the tiny run: AutoModel 0, pipeline at most 6e-8 (float32 rounding of the softmax)
LONG = "First, " + "we multiply seven by eight and carry the tens. " * 40 + "So 7 x 8 = 56."


def rows(n=4):
    test = load_champ()["test"]
    questions, solutions = list(test["question"][:n]), list(test["solution"][:n])
    return (questions + ["What is 7 x 8?", "What is 7 x 8?", "Add 2 and 3."],
            solutions + [LONG, "Surely " + LONG * 2, "2 + 3 = 5 <|endoftext|><|im_end|> so the answer is 5."])


@pytest.fixture(scope="module")
def run(tiny_run, tmp_path_factory):
    "A copy of the shared tiny run (probe and LoRA as trained), which these tests may change."
    out = tmp_path_factory.mktemp("export") / "run"
    shutil.copytree(tiny_run, out, ignore=shutil.ignore_patterns("checkpoints"))
    return out


@pytest.fixture(scope="module")
def exported(run, tmp_path_factory):
    "Each trained classifier of the run exported once, for the tests that only read the folders."
    out = tmp_path_factory.mktemp("hf")
    return {kind: export(run, out / kind, kind=kind) for kind in ("probe", "lora")}


def _helper(folder: Path) -> dict:
    ns = {}
    exec((folder / "phi_cls_prompt.py").read_text(), ns)
    return ns


def pipeline_p(folder: Path, questions, solutions, batch_size=4):
    "p(flawed) from pipeline('text-classification') on the helper's prompts, in batches (right padding)."
    from transformers import pipeline
    pipe, helper = pipeline("text-classification", model=str(folder), top_k=None), _helper(folder)
    texts = [helper["build_prompt"](q, s, pipe.tokenizer) for q, s in zip(questions, solutions)]
    return [{r["label"]: r["score"] for r in out}["flawed"] for out in pipe(texts, batch_size=batch_size)]


def automodel_p(folder: Path, questions, solutions):
    from transformers import AutoModelForSequenceClassification, AutoTokenizer
    model = AutoModelForSequenceClassification.from_pretrained(folder)
    tok, helper = AutoTokenizer.from_pretrained(folder), _helper(folder)
    out = []
    with torch.no_grad():
        for q, s in zip(questions, solutions):
            ids = torch.tensor([helper["encode"](q, s, tok)])
            out.append(torch.softmax(model(input_ids=ids).logits.float(), -1)[0, 1].item())
    return out


def close(a, b): return max(abs(x - y) for x, y in zip(a, b)) < TOL


@pytest.mark.parametrize("kind", ["probe", "lora"])
def test_tiny_matches_phi_cls(run, exported, kind):
    "The run's trained (bias-free) heads export exactly: AutoModel and the pipeline, batched or not, give phi_cls's p."
    folder, (questions, solutions) = exported[kind], rows()
    assert set(load_file(run / kind / "head.safetensors")) == {"weight"}
    assert sorted(p.name for p in folder.iterdir() if p.suffix in (".bin", ".pt", ".pth", ".pkl")) == []
    config = json.loads((folder / "config.json").read_text())
    assert config["id2label"] == {"0": "correct", "1": "flawed"} and config["label2id"] == {"correct": 0, "flawed": 1}
    assert config["phi_cls"]["max_length"] == 128 and config["phi_cls"]["prompt"] == PROMPT and "auto_map" not in config
    assert json.loads((folder / "tokenizer_config.json").read_text()).get("padding_side") == "right"
    clf = load_classifier(run, kind=kind, device="cpu", precision="fp32")
    ids = clf.encoder(questions, solutions)
    assert max(ids["length"]) == 128 and sum(ids["truncated"]) >= 2  # rows longer than max_length are in the batch
    ours = clf.predict_proba(questions, solutions)[:, 1]
    assert close(automodel_p(folder, questions, solutions), ours)
    assert close(pipeline_p(folder, questions, solutions), ours)
    assert close(pipeline_p(folder, questions, solutions, batch_size=1), ours)


def test_loads_offline_without_phi_cls(run, exported, tmp_path):
    questions, solutions = rows(2)
    folder = exported["lora"]
    clf = load_classifier(run, kind="lora", device="cpu", precision="fp32")
    expected = clf.predict_proba(questions, solutions)[:, 1]
    script = textwrap.dedent(f"""
        import json, sys
        from transformers import pipeline
        sys.path.insert(0, {str(folder)!r})
        from phi_cls_prompt import build_prompt
        pipe = pipeline("text-classification", model={str(folder)!r}, top_k=None)
        texts = [build_prompt(q, s, pipe.tokenizer) for q, s in zip({questions!r}, {solutions!r})]
        p = [{{r["label"]: r["score"] for r in out}}["flawed"] for out in pipe(texts, batch_size=2)]
        assert "phi_cls" not in sys.modules, "phi_cls was imported"
        print(json.dumps(p))
        """)
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    env |= {"HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, cwd=tmp_path, env=env)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert close(json.loads(proc.stdout.strip().splitlines()[-1]), expected)


def test_card_figures_are_the_runs(run, exported):
    metrics = json.loads((run / "metrics.json").read_text())
    for kind, folder in exported.items():
        card = (folder / "README.md").read_text()
        meta = yaml.safe_load(card.split("---")[1])
        assert meta["library_name"] == "transformers" and meta["pipeline_tag"] == "text-classification"
        assert meta["license"] == "apache-2.0"
        found = {m["type"]: m["value"] for m in meta["model-index"][0]["results"][0]["metrics"]}
        assert found == {k: metrics[kind][k] for k in ("accuracy", "precision", "recall", "f1")}
        for k, v in found.items(): assert f"| {k}{'' if k == 'accuracy' else ' (flawed)'} | {v:.4f} |" in card
        assert json.loads((run / "run.json").read_text())["data"]["fingerprint"] in card
        # the run's shortcut baselines, as metrics.json has them
        for name, base in metrics["baselines"]["results"].items():
            assert f"| {name} | {base['accuracy']:.4f} | {base['balanced_accuracy']:.4f} |" in card
        assert "no shortcut baselines" not in card and ("full backbone" in card) == (kind == "probe")


def test_card_without_baselines(run, tmp_path):
    metrics = json.loads((run / "metrics.json").read_text())
    saved = metrics.pop("baselines")
    (run / "metrics.json").write_text(json.dumps(metrics))
    try: card = (export(run / "probe", tmp_path / "hf") / "README.md").read_text()
    finally:
        metrics["baselines"] = saved
        (run / "metrics.json").write_text(json.dumps(metrics))
    assert "no shortcut baselines" in card and "| majority |" not in card


def test_old_artifact_with_head_bias(run, tmp_path):
    "An artifact saved before heads were bias-free still predicts in phi_cls (with its bias) but is refused by export."
    old = tmp_path / "old"
    shutil.copytree(run / "probe", old)
    sd = load_file(old / "head.safetensors")
    save_file({"weight": sd["weight"], "bias": torch.tensor([0.25, -0.25])}, old / "head.safetensors")
    questions, solutions = rows(2)
    def raw(art):
        clf = load_classifier(art, device="cpu", precision="fp32")
        return clf.predict_proba(questions, solutions, calibrated=False)
    p_new, p_old = raw(run / "probe"), raw(old)  # before the fitted temperature, which would scale the shift
    logit_diff = lambda p: torch.logit(torch.tensor(p[:, 1], dtype=torch.float64))
    shift = logit_diff(p_old) - logit_diff(p_new)  # the bias moves every logit of flawed vs correct by -0.5
    assert torch.allclose(shift, torch.full_like(shift, -0.5), atol=1e-4)
    with pytest.raises(ModelError, match="trained with a head bias .*retrain it with this phi_cls to export"):
        export(old, tmp_path / "hf")
    assert not (tmp_path / "hf").exists()


def test_refusals(run, tmp_path):
    with pytest.raises(ModelError, match="cannot be found"):
        export(run / "probe", tmp_path / "missing", base_model=str(tmp_path / "no-such-backbone"))
    mamba = tmp_path / "mamba"
    from transformers import MambaConfig
    MambaConfig(vocab_size=1000, hidden_size=64, num_hidden_layers=2).save_pretrained(mamba)
    with pytest.raises(ModelError, match="has no \\*ForSequenceClassification class"):
        export(run / "probe", tmp_path / "unsupported", base_model=str(mamba))
    full = tmp_path / "full"; full.mkdir(); (full / "mine.txt").write_text("keep")
    with pytest.raises(ModelError, match="not empty"): export(run / "probe", full)
    assert [p.name for p in full.iterdir()] == ["mine.txt"]
    assert not any((tmp_path / n).exists() for n in ("missing", "unsupported"))
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no temporary folders left behind


def test_cli(run, tmp_path):
    zipped = tmp_path / "artifacts.zip"
    shutil.copy(run / "artifacts.zip", zipped)
    proc = phi_cls("export", "--model", zipped, "--kind", "probe", "--out", tmp_path / "hf")
    assert "exported to" in proc.stdout and (tmp_path / "hf" / "model.safetensors").exists()
    again = phi_cls_here("export", "--model", run, "--kind", "lora", "--out", tmp_path / "hf", "--overwrite", "--fp32")
    assert again.returncode == 0
    assert json.loads((tmp_path / "hf" / "config.json").read_text())["phi_cls"]["kind"] == "lora"


@SLOW
def test_embedded_lora(tmp_path):
    "SmolLM2-135M (Llama): LoRA with random adapters and head, exported and compared on 2 rows, one over max_length."
    from phi_cls.artifact import save_classifier
    from phi_cls.model import PhiClassifier, add_lora, init_head, load_backbone, load_tokenizer
    torch.manual_seed(0)
    backbone = add_lora(load_backbone("embedded", "cpu", "none", "fp32"), r=2, alpha=4)
    with torch.no_grad():
        for n, p in backbone.named_parameters():
            if "lora_B" in n: p.normal_(std=0.02)
    head = init_head(backbone.config.hidden_size)
    with torch.no_grad(): head.weight.normal_(std=0.05)
    meta = dict(base_model="embedded", max_length=96, precision="fp32", quantize="none", prompt=PROMPT)
    save_classifier(PhiClassifier(backbone, head), load_tokenizer("embedded"), tmp_path / "lora", meta)
    del backbone
    questions, solutions = ["Add 2 and 3.", "What is 7 x 8?"], ["2 + 3 = 5<|im_end|> so 5.", LONG]
    folder = export(tmp_path / "lora", tmp_path / "hf")
    card = (folder / "README.md").read_text()
    assert "base_model: HuggingFaceTB/SmolLM2-135M-Instruct" in card and "no test metrics" in card
    ours = load_classifier(tmp_path / "lora", device="cpu", precision="fp32").predict_proba(questions, solutions)[:, 1]
    assert close(pipeline_p(folder, questions, solutions, batch_size=2), ours)
