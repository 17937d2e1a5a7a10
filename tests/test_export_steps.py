"""`phi-cls export` of a classifier with a step head: `steps/`, the backbone's *ForTokenClassification, gives phi_cls's
p(wrong) (`Classifier.step_probs`) at the step ends its helper finds, which are phi_cls's (to 1e-5, probe and merged
LoRA); without a step head nothing changes."""
import json, shutil
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file

from conftest import phi_cls_here, refused
from phi_cls.artifact import save_classifier
from phi_cls.data import PROMPT, PromptEncoder, load_champ, step_spans
from phi_cls.export import export
from phi_cls.model import ModelError, PhiClassifier, add_lora, init_head, load_backbone, load_tokenizer
from phi_cls.predict import load_classifier

TOL = 1e-5
MAX_LENGTH = 128
STEPS = {"separator": "line", "decision": {"threshold": 0.4, "rule": "classifier"}}
SOLUTION_FILES = ["README.md", "config.json", "model.safetensors", "phi_cls_prompt.py", "tokenizer.json",
                  "tokenizer_config.json"]
LONG = "\n\n".join("\n".join(f"Step {i}: we multiply seven by eight and carry the tens." for i in range(j, j + 5))
                   for j in range(0, 40, 5)) + "\nSo 7 x 8 = 56."  # 41 lines in 8 paragraphs


def rows():
    "CHAMP test solutions (multi-line) and made-up ones: paragraphs, indents, a non-ASCII end, the pad token, too long."
    test = load_champ()["test"]
    q = "What is 7 x 8?"
    return (list(test["question"][:3]) + [q] * 4,
            list(test["solution"][:3]) + ["7 x 8 = 54.\n\n  So the answer is 54, the product é.\nDone",
                                          "First 7 x 8 = 56 <|endoftext|>\n\nSo 56.\n", LONG, "56"])


@pytest.fixture(scope="module")
def artifacts(tmp_path_factory):
    "Tiny probe, LoRA (random nonzero adapters) and probe-on-layer-k artifacts with random heads, no step head."
    tmp, tok = tmp_path_factory.mktemp("artifacts"), load_tokenizer("tiny")
    torch.manual_seed(0)
    head = init_head(64)
    with torch.no_grad(): head.weight.normal_(std=0.5)
    meta = dict(base_model="tiny", max_length=MAX_LENGTH, precision="fp32", quantize="none", prompt=PROMPT)
    fresh = lambda: load_backbone("tiny", "cpu", "none", "fp32")
    save_classifier(PhiClassifier(fresh(), head), tok, tmp / "probe", meta)
    for layer in (1, 2):  # a middle layer; the last one by number (phi_cls reads it through layer_states)
        save_classifier(PhiClassifier(fresh(), head, layer=layer), tok, tmp / f"probe-layer{layer}", meta)
    lora = add_lora(fresh(), r=4, alpha=8)
    with torch.no_grad():
        for n, p in lora.named_parameters():
            if "lora_B" in n: p.normal_(std=0.2)
    save_classifier(PhiClassifier(lora, head), tok, tmp / "lora", meta)
    return tmp


def with_steps(art: Path, dest: Path, separator="line", seed=1) -> Path:
    "A copy of `art` with a random step head and classifier.json's 'steps', as training with steps writes them."
    shutil.copytree(art, dest)
    torch.manual_seed(seed)
    save_file({"weight": torch.randn(2, 64)}, dest / "step_head.safetensors")
    info = json.loads((dest / "classifier.json").read_text())
    steps = dict(STEPS, separator=separator)
    (dest / "classifier.json").write_text(json.dumps(dict(info, steps=steps), indent=2))
    return dest


def step_ends_by_decoding(tok, encoded: dict, row: int, solution: str, separator: str) -> list:
    """Prompt positions of the step ends found without offsets: the solution token whose decoded prefix first covers the
    step's last character, placed where PromptEncoder's solution_mask says the kept solution tokens sit (-1: cut)."""
    sol = tok(solution, add_special_tokens=False)["input_ids"]
    mask = encoded["solution_mask"][row]
    kept, at = sum(mask), mask.index(1) if 1 in mask else 0
    ends = []
    for _, end in step_spans(solution, separator):
        t = next(t for t in range(len(sol)) if tok.decode(sol[:t + 1])[:end] == solution[:end])
        ends.append(at + t - (len(sol) - kept) if t >= len(sol) - kept else -1)
    return ends


def phi_cls_p_steps(art: Path, questions, solutions) -> list:
    "phi_cls's p(wrong) of each step: `Classifier.step_probs` of the artifact, loaded as a user loads it (None: cut)."
    p_steps = load_classifier(art, workers=1).step_probs(questions, solutions)
    return [[None if x != x else x for x in ps] for ps in p_steps]


def helper(folder: Path) -> dict:
    ns, text = {}, (folder / "phi_cls_steps.py").read_text()
    assert "import phi_cls" not in text and "from phi_cls" not in text
    exec(text, ns)
    return ns


def batched_p_steps(folder: Path, questions, solutions) -> tuple:
    "The exported step model in plain transformers, one right-padded batch: (step ends, p(wrong) there, None: cut)."
    from transformers import AutoModelForTokenClassification, AutoTokenizer
    model, tok, ns = (AutoModelForTokenClassification.from_pretrained(folder), AutoTokenizer.from_pretrained(folder),
                      helper(folder))
    encoded = [ns["encode_steps"](q, s, tok) for q, s in zip(questions, solutions)]
    batch = tok.pad({"input_ids": [ids for ids, _ in encoded]}, return_tensors="pt")
    assert tok.padding_side == "right"
    with torch.no_grad(): p = torch.softmax(model(**batch).logits.float(), -1)[..., 1]
    return [e for _, e in encoded], [[p[i, e].item() if e >= 0 else None for e in ends]
                                     for i, (_, ends) in enumerate(encoded)], ns, model, tok


def close(a, b):
    "Same length, the same steps cut (None), the others within TOL."
    return len(a) == len(b) and all((x is None) == (y is None) and (x is None or abs(x - y) < TOL)
                                    for x, y in zip(a, b))


@pytest.mark.parametrize("kind,separator", [("probe", "line"), ("lora", "line"), ("probe-layer2", "blank")])
def test_step_model_matches_phi_cls(artifacts, tmp_path, kind, separator):
    "The exported token classifier's p(wrong) at the helper's step ends is phi_cls's, for steps truncation kept."
    art = with_steps(artifacts / kind, tmp_path / kind, separator)
    out = export(art, tmp_path / "hf")
    folder, (questions, solutions) = out / "steps", rows()
    config = json.loads((folder / "config.json").read_text())
    assert config["architectures"] == ["Phi3ForTokenClassification"] and "auto_map" not in config
    assert config["id2label"] == {"0": "correct", "1": "wrong"}
    assert config["phi_cls"]["separator"] == separator and config["phi_cls"]["threshold"] == 0.4
    assert sorted(p.name for p in folder.iterdir() if p.suffix in (".bin", ".pt", ".pth", ".pkl")) == []
    ends, theirs, ns, model, tok = batched_p_steps(folder, questions, solutions)
    phi_tok = load_tokenizer(str(art))
    encoded = PromptEncoder(phi_tok, MAX_LENGTH, separator)(questions, solutions)  # what step_probs reads
    assert sum(encoded["truncated"]) >= 1 and max(encoded["length"]) == MAX_LENGTH
    ours = phi_cls_p_steps(art, questions, solutions)
    for i, (q, s) in enumerate(zip(questions, solutions)):
        assert ns["encode_steps"](q, s, tok)[0] == encoded["input_ids"][i]  # the helper's prompt is phi_cls's
        assert ends[i] == encoded["step_ends"][i] == step_ends_by_decoding(phi_tok, encoded, i, s, separator)
        assert len(ends[i]) == len(step_spans(s, separator))
        assert close(theirs[i], ours[i]), (i, theirs[i], ours[i])
        assert close(ns["step_probs"](model, tok, q, s), ours[i])  # unbatched, through the helper
    long, post = solutions.index(LONG), PromptEncoder(phi_tok, MAX_LENGTH).post
    assert -1 in ends[long] and ends[long][-1] == MAX_LENGTH - 1 - len(post)  # its last step ends the solution


def test_without_step_head_nothing_changes(artifacts, tmp_path):
    "No step head: exactly the solution export's files. With one: those same bytes, steps/, and one more card section."
    plain = export(artifacts / "lora", tmp_path / "a" / "hf")
    assert sorted(p.name for p in plain.iterdir()) == SOLUTION_FILES
    card = (plain / "README.md").read_text()
    assert "Step model" not in card and "steps/" not in card
    stepped = export(with_steps(artifacts / "lora", tmp_path / "lora"), tmp_path / "b" / "hf")
    assert sorted(p.name for p in stepped.iterdir()) == sorted(SOLUTION_FILES + ["steps"])
    for name in SOLUTION_FILES[1:]: assert (stepped / name).read_bytes() == (plain / name).read_bytes(), name
    before, rest = (stepped / "README.md").read_text().split("\n## Step model (`steps/`)\n")
    assert before + "\n## Training" + rest.split("\n## Training", 1)[1] == card


def test_middle_layer_refused_like_the_solution_export(artifacts, tmp_path):
    art = with_steps(artifacts / "probe-layer1", tmp_path / "art")
    with pytest.raises(ModelError, match="reads layer 1 of 2 with pooling='last'"): export(art, tmp_path / "hf")
    assert not (tmp_path / "hf").exists()


def test_no_token_classification_class(tmp_path, capsys):
    "OPT has a sequence classifier in transformers but no token classifier: the solution export alone, said once."
    from transformers import OPTConfig, OPTForCausalLM, OPTModel
    config = OPTConfig(vocab_size=1000, hidden_size=64, ffn_dim=128, num_hidden_layers=2, num_attention_heads=4,
                       max_position_embeddings=512, word_embed_proj_dim=64, pad_token_id=0, bos_token_id=0,
                       eos_token_id=0)
    torch.manual_seed(0)
    OPTForCausalLM(config).save_pretrained(tmp_path / "opt")
    tok = load_tokenizer("tiny")
    tok.save_pretrained(tmp_path / "opt")
    head = init_head(64)
    meta = dict(base_model=str(tmp_path / "opt"), max_length=MAX_LENGTH, precision="fp32", prompt=PROMPT)
    save_classifier(PhiClassifier(OPTModel(config), head), tok, tmp_path / "plain", meta)
    art = with_steps(tmp_path / "plain", tmp_path / "art")
    out = export(art, tmp_path / "hf")
    said = [line for line in capsys.readouterr().out.splitlines() if "ForTokenClassification" in line]
    assert len(said) == 1 and "architecture 'opt'" in said[0] and "only the solution classifier" in said[0]
    assert sorted(p.name for p in out.iterdir()) == SOLUTION_FILES
    assert json.loads((out / "config.json").read_text())["architectures"] == ["OPTForSequenceClassification"]
    assert said[0] in (out / "README.md").read_text()


@pytest.mark.parametrize("damage,says", [
    (lambda a: (a / "step_head.safetensors").unlink(), "step_head.safetensors is missing"),
    (lambda a: save_file({"weight": torch.ones(3, 64)}, a / "step_head.safetensors"), "of shape (2, 64)"),
    (lambda a: (a / "classifier.json").write_text(json.dumps(dict(json.loads((a / "classifier.json").read_text()),
                                                                  steps={"separator": "tab"}))),
     '"separator": "line" or "blank"'),
    (lambda a: (a / "classifier.json").write_text(json.dumps(dict(json.loads((a / "classifier.json").read_text()),
                                                                  steps=dict(STEPS, decision={"rule": "later"})))),
     "field 'steps'"),  # a decision StepDecision does not read, refused as predict would refuse it
    (lambda a: (a / "classifier.json").write_text(json.dumps({k: v for k, v in json.loads(
        (a / "classifier.json").read_text()).items() if k != "steps"})), "but classifier.json has no 'steps' object"),
])
def test_damaged_step_head_refused(artifacts, tmp_path, damage, says):
    art = with_steps(artifacts / "probe", tmp_path / "runs" / "art")
    damage(art)
    refused("export", "--model", art, "--out", tmp_path / "runs" / "hf", says=[str(art), says], watch=tmp_path / "runs")


def test_cli_and_overwrite(artifacts, tmp_path):
    "The CLI says where the step model went; a later export without one moves the old steps/ aside with the rest."
    art = with_steps(artifacts / "probe", tmp_path / "art")
    proc = phi_cls_here("export", "--model", art, "--out", tmp_path / "hf")
    assert proc.returncode == 0 and "step model:" in proc.stdout and "Phi3ForTokenClassification" in proc.stdout
    again = phi_cls_here("export", "--model", artifacts / "probe", "--out", tmp_path / "hf", "--overwrite")
    assert again.returncode == 0 and "step model" not in again.stdout
    assert not (tmp_path / "hf" / "steps").exists()
    assert [p.name for p in (tmp_path / "hf").glob("previous-*/steps/phi_cls_steps.py")] == ["phi_cls_steps.py"]


@pytest.mark.slow
def test_embedded_lora_steps(tmp_path):
    "SmolLM2-135M (LlamaForTokenClassification): a random LoRA and step head, 2 rows, one over max_length."
    from phi_cls.model import EMBEDDED
    torch.manual_seed(0)
    backbone = add_lora(load_backbone(EMBEDDED, "cpu", "none", "fp32"), r=2, alpha=4)
    with torch.no_grad():
        for n, p in backbone.named_parameters():
            if "lora_B" in n: p.normal_(std=0.02)
    head, hidden = init_head(backbone.config.hidden_size), backbone.config.hidden_size
    meta = dict(base_model=EMBEDDED, max_length=96, precision="fp32", quantize="none", prompt=PROMPT)
    save_classifier(PhiClassifier(backbone, head), load_tokenizer(EMBEDDED), tmp_path / "plain", meta)
    del backbone
    art = shutil.copytree(tmp_path / "plain", tmp_path / "lora")
    save_file({"weight": torch.randn(2, hidden) * 0.05}, art / "step_head.safetensors")
    info = json.loads((art / "classifier.json").read_text())
    (art / "classifier.json").write_text(json.dumps(dict(info, steps=STEPS)))
    folder = export(art, tmp_path / "hf") / "steps"
    assert json.loads((folder / "config.json").read_text())["architectures"] == ["LlamaForTokenClassification"]
    questions, solutions = ["Add 2 and 3.", "What is 7 x 8?"], ["2 + 3 = 5<|im_end|>\nso 5.", LONG]
    ends, theirs, _, _, _ = batched_p_steps(folder, questions, solutions)
    ours = phi_cls_p_steps(art, questions, solutions)
    for i in range(len(questions)): assert close(theirs[i], ours[i]), (i, theirs[i], ours[i])
    assert -1 in ends[1] and None in ours[1]
