"""THE REFERENCE WAY, reimplemented for benchmarking only. This is not phi_cls and nothing imports it but bench.py.

It computes the way the reference recipe does, so that bench.py can time both side by side on the same rows:
- the classifier calls the causal LM with `output_hidden_states=True` (the LM head computes full-vocabulary logits
  for every token, which are thrown away) and pools `hidden_states[-1][:, -1]`;
- prompts are cut on the right at max_length (the final answer of a long solution is lost);
- batches are padded to their longest row by `DataCollatorWithPadding`, in random order (no length grouping);
- the linear probe runs through the HF Trainer for every epoch, so the frozen backbone runs 3 times per example;
- fp32 on the CPU (the recipe's bf16 assumes a GPU), AdamW, batch 8; `lora_gpu` is experiment 2 as the recipe runs it on a GPU
  (4-bit NF4, bf16, paged_adamw_8bit), for benchmarks/gpu_check.py.
Checkpoint saving is off here (the reference's `save_model` crashes on tied embeddings), which only helps the reference.
"""
import time

import torch
import torch.nn.functional as F
from datasets import Dataset
from torch import nn
from transformers import AutoModelForCausalLM, AutoTokenizer, DataCollatorWithPadding, Trainer, TrainingArguments, set_seed

from phi_cls.data import build_prompt


class ReferenceClassifier(nn.Module):
    "CausalLM with output_hidden_states=True -> hidden_states[-1][:, -1] -> nn.Linear(hidden, 2) -> cross-entropy."
    def __init__(self, lm):
        super().__init__()
        self.lm, self.classifier = lm, nn.Linear(lm.config.hidden_size, 2)

    def forward(self, input_ids=None, attention_mask=None, labels=None):
        out = self.lm(input_ids=input_ids, attention_mask=attention_mask, output_hidden_states=True)
        logits = self.classifier(out.hidden_states[-1][:, -1, :])
        loss = F.cross_entropy(logits, labels) if labels is not None else None
        return {"loss": loss, "logits": logits} if loss is not None else {"logits": logits}


def load(model_dir):
    tok = AutoTokenizer.from_pretrained(model_dir)
    tok.pad_token, tok.padding_side = tok.eos_token, "left"
    lm = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32)
    return tok, lm


def tokenize(tok, rows: Dataset, max_length: int) -> Dataset:
    "Right truncation at max_length, no padding yet (the collator pads each batch)."
    enc = tok([build_prompt(q, s) for q, s in zip(rows["question"], rows["solution"])], truncation=True, max_length=max_length)
    return Dataset.from_dict({"input_ids": enc["input_ids"], "attention_mask": enc["attention_mask"], "labels": rows["label"]})


def args(out, epochs=3, batch=8, accum=4, **overrides):
    "The recipe's TrainingArguments on the CPU (fp32, AdamW); `overrides` for the GPU (bf16, paged_adamw_8bit)."
    return TrainingArguments(**{**dict(output_dir=str(out), num_train_epochs=epochs, per_device_train_batch_size=batch, per_device_eval_batch_size=8,
                             gradient_accumulation_steps=accum, learning_rate=2e-4, lr_scheduler_type="cosine", warmup_steps=0.1,
                             optim="adamw_torch", bf16=False, use_cpu=True, logging_steps=25, save_strategy="no", report_to="none",
                             seed=42, data_seed=42, disable_tqdm=True, remove_unused_columns=False), **overrides})


def _trainer(model, tok, out, train=None, **kw):
    return Trainer(model=model, args=args(out, **kw), train_dataset=train, data_collator=DataCollatorWithPadding(tok))


def probe(model_dir, train: Dataset, test: Dataset, max_length: int, out, epochs=3, batch=8, accum=4):
    "Experiment 1 the reference way: frozen fp32 backbone run by the Trainer every epoch; then Trainer.predict on test."
    tok, lm = load(model_dir)
    for p in lm.parameters(): p.requires_grad_(False)
    set_seed(42)
    model = ReferenceClassifier(lm)
    start = time.perf_counter()
    tr, te = tokenize(tok, train, max_length), tokenize(tok, test, max_length)
    trainer = _trainer(model, tok, out, tr, epochs=epochs, batch=batch, accum=accum)
    trainer.train()
    logits = torch.as_tensor(trainer.predict(te).predictions)
    return time.perf_counter() - start, torch.softmax(logits.float(), -1).numpy()


def lora_train(model_dir, train: Dataset, max_length: int, out, batch=8, accum=4):
    "Experiment 2 the reference way: LoRA on all linear layers of the fp32 causal LM, one epoch over `train`."
    from peft import LoraConfig, get_peft_model
    tok, lm = load(model_dir)
    lm = get_peft_model(lm, LoraConfig(r=16, lora_alpha=32, lora_dropout=0.05, target_modules="all-linear"))
    set_seed(42)
    model = ReferenceClassifier(lm)
    tr = tokenize(tok, train, max_length)
    trainer = _trainer(model, tok, out, tr, epochs=1, batch=batch, accum=accum)
    start = time.perf_counter()
    trainer.train()
    return time.perf_counter() - start, sum(map(len, tr["input_ids"]))


def predict(model_dir, test: Dataset, max_length: int, out):
    "Inference the reference way: Trainer.predict over the causal LM with hidden states, batch 8."
    tok, lm = load(model_dir)
    set_seed(42)
    model = ReferenceClassifier(lm).eval()
    te = tokenize(tok, test, max_length)
    start = time.perf_counter()
    _trainer(model, tok, out).predict(te)
    return time.perf_counter() - start, len(te), sum(map(len, te["input_ids"]))


def load_4bit(model_dir, gpu: bool):
    "The recipe's GPU model: 4-bit NF4 (double quantization) with bf16 compute, prepared for k-bit training (CPU: bitsandbytes' CPU backend, fp32)."
    from peft import prepare_model_for_kbit_training
    from transformers import BitsAndBytesConfig
    dtype = torch.bfloat16 if gpu else torch.float32
    tok = AutoTokenizer.from_pretrained(model_dir)
    tok.pad_token, tok.padding_side = tok.eos_token, "left"
    quant = BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_quant_type="nf4", bnb_4bit_use_double_quant=True, bnb_4bit_compute_dtype=dtype)
    lm = AutoModelForCausalLM.from_pretrained(model_dir, quantization_config=quant, dtype=dtype, device_map={"": 0 if gpu else "cpu"})
    return tok, prepare_model_for_kbit_training(lm)


def lora_gpu(model_dir, train: Dataset, test: Dataset, max_length: int, out, quantize=True, gpu=True, batch=8, accum=4, callbacks=None):
    """Experiment 2 the reference way on a GPU: 4-bit LoRA (all linear layers), bf16, paged_adamw_8bit, one epoch; then Trainer.predict on
    test, timed from text (tokenizing included, as phi_cls's prediction is). `callbacks`: TrainerCallbacks (gpu_check's step timer)."""
    from peft import LoraConfig, get_peft_model
    tok, lm = load_4bit(model_dir, gpu) if quantize else load(model_dir)
    lm = get_peft_model(lm, LoraConfig(r=16, lora_alpha=32, lora_dropout=0.05, target_modules="all-linear"))
    set_seed(42)
    model = ReferenceClassifier(lm)
    tr = tokenize(tok, train, max_length)
    gpu_args = args(out, epochs=1, batch=batch, accum=accum, optim="paged_adamw_8bit", bf16=gpu, use_cpu=not gpu)
    trainer = Trainer(model=model, args=gpu_args, train_dataset=tr, data_collator=DataCollatorWithPadding(tok), callbacks=callbacks)
    start = time.perf_counter()
    trainer.train()
    train_seconds = time.perf_counter() - start
    trainer.predict(tokenize(tok, test.select(range(min(8, len(test)))), max_length))  # warm-up
    start = time.perf_counter()
    trainer.predict(tokenize(tok, test, max_length))
    return dict(train_seconds=train_seconds, train_tokens=sum(map(len, tr["input_ids"])), predict_seconds=time.perf_counter() - start)
