"""One GPU check: the recipe's experiment 2 (4-bit LoRA) and the probe on a Phi-4-mini-shaped backbone, as phi_cls runs them.

    python benchmarks/gpu_check.py --out gpu_check.json             # on one CUDA GPU, under 8 minutes, no download
    python benchmarks/gpu_check.py --model /path/to/Phi-4-mini-instruct --out gpu_check.json   # the real weights, if a copy is here
    python benchmarks/gpu_check.py --dry-run --out /tmp/dry.json    # the same code on the CPU with the tiny config (the CI test)
    make gpu-check

Without --model it builds Phi-4-mini's shape (32 layers, hidden 3072, 24 heads / 8 KV heads, intermediate 8192, vocabulary 200064,
partial rotary 0.75, tied embeddings) with random weights, saves it with a tokenizer to a temporary folder and passes that folder to
`phi_cls.train.run` as `model`. Every row is long enough to fill 512 tokens. Settings: 4-bit NF4 with bf16 compute, LoRA r16 / alpha 32
on all linear layers plus the head, paged_adamw_8bit, batch 8 x accumulation 4, flash-attn when installed and sdpa otherwise.
Then it times prediction with the saved LoRA classifier, and the reference way (benchmarks/reference.py) on the same GPU and rows.
Writes JSON and prints a short table. MFU is model FLOPs (forward + input gradients: 4 per linear weight per token plus causal
attention, the work a frozen-base LoRA step needs; `mfu_6n` also counts weight gradients, the usual 6N convention) over the GPU's
dense bf16 peak from PEAK_BF16_TFLOPS; an unknown GPU gets MFU null.
"""
import argparse, dataclasses, json, platform, sys, tempfile, time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
PHI4_MINI = dict(vocab_size=200064, hidden_size=3072, intermediate_size=8192, num_hidden_layers=32, num_attention_heads=24,
                 num_key_value_heads=8, max_position_embeddings=131072, partial_rotary_factor=0.75, tie_word_embeddings=True,
                 rope_theta=10000.0, rms_norm_eps=1e-5)
# Dense bf16 tensor-core peaks (TFLOPS, no sparsity) by a part of torch.cuda.get_device_name(); the first match wins.
PEAK_BF16_TFLOPS = [("H200", 989), ("H100 PCIe", 756), ("H100 NVL", 835), ("H100", 989), ("A100", 312), ("L40S", 362), ("L4", 121)]
ORIGINAL = dict(gpu="A100-40GB", train_samples_per_s=16.1, eval_samples_per_s=34.8, mfu=0.19)  # the original project's figures
GOAL_MFU = 0.40


def parse(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--dry-run", action="store_true", help="run on the CPU with the tiny config and few rows (a test of this script)")
    p.add_argument("--model", help="a local folder with real weights (e.g. Phi-4-mini-instruct) instead of the random Phi-4-mini shape")
    p.add_argument("--out", default="gpu_check.json", help="where to write the JSON results (default gpu_check.json)")
    p.add_argument("--train-rows", type=int, help="LoRA training rows, one epoch (default 256 = 8 optimizer steps of 8 x 4; dry run 8)")
    p.add_argument("--test-rows", type=int, help="rows to predict (default 128; dry run 4)")
    p.add_argument("--max-length", type=int, help="tokens per row (default 512; dry run 128)")
    p.add_argument("--no-reference", action="store_true", help="skip the reference way")
    a = p.parse_args(argv)
    for k, full, dry in (("train_rows", 256, 8), ("test_rows", 128, 4), ("max_length", 512, 128)):
        if getattr(a, k) is None: setattr(a, k, dry if a.dry_run else full)
    return a


def peak_tflops(name: str | None):
    "The dense bf16 peak of a GPU by name, or None."
    return next((v for k, v in PEAK_BF16_TFLOPS if name and k in name), None)


def linear_params(config) -> int:
    "Weights of the backbone's linear layers (attention + MLP; no LM head), from the config: also right for 4-bit (packed) weights."
    h, i, heads, kv = config.hidden_size, config.intermediate_size, config.num_attention_heads, config.num_key_value_heads
    d = getattr(config, "head_dim", None) or h // heads
    return config.num_hidden_layers * (h * (heads * d + 2 * kv * d) + heads * d * h + 3 * h * i)


def build_backbone(folder: Path, dry_run: bool, device) -> str:
    "Save a random Phi-4-mini-shaped (dry run: tiny) Phi-3 with a tokenizer to `folder`; return its path."
    import torch
    from transformers import Phi3Config, Phi3ForCausalLM
    from phi_cls.model import load_tokenizer, resolve_model
    tiny = resolve_model("tiny")
    if dry_run: config = Phi3Config.from_pretrained(tiny)
    else: config = Phi3Config(**PHI4_MINI, bos_token_id=0, eos_token_id=0, pad_token_id=0)
    torch.manual_seed(0)
    with torch.device(device): model = Phi3ForCausalLM(config).to(torch.bfloat16)
    model.save_pretrained(folder)
    del model
    load_tokenizer(tiny).save_pretrained(folder)  # a 1,000-token BPE: its ids fit any vocabulary; rows are long enough for max_length
    return str(folder)


def long_rows(folder: Path, n_train: int, n_test: int) -> str:
    "train.csv and test.csv of CHAMP rows whose solutions are repeated until they fill max_length (ends kept on truncation)."
    from phi_cls.data import load_champ
    champ = load_champ()
    for split, n in (("train", n_train), ("test", n_test)):
        df = champ[split].to_pandas()
        df = df.iloc[[i % len(df) for i in range(n)]].reset_index(drop=True)
        df["question"] = [f"(row {i}) {q}" for i, q in enumerate(df["question"])]  # distinct questions
        df["solution"] = [(s + "\n") * 8 for s in df["solution"]]
        df["index"] = range(len(df))
        df[["index", "question", "solution", "label"]].to_csv(folder / f"{split}.csv", index=False)
    return str(folder)


def phi_cls_run(a, model: str, data: str, out: Path) -> dict:
    "Probe + LoRA through phi_cls.train.run, then prediction with the saved LoRA classifier."
    import pandas as pd, torch
    import phi_cls
    from bench import forward_flops
    from phi_cls.train import TrainConfig, resolve, run
    cuda = torch.cuda.is_available() and not a.dry_run
    cfg = TrainConfig(mode="both", model=model, data=data, output_dir=str(out), max_length=a.max_length, epochs=1, batch_size=8,
                      grad_accum=4, learning_rate=2e-4, lora_r=16, lora_alpha=32, progress=False, allow_leakage=True,
                      device="cuda" if cuda else "cpu", quantize="4bit", precision="bf16" if cuda else "auto",
                      optim="paged_adamw_8bit", micro_batch_size=None if cuda else 2)
    res = resolve(cfg)
    if cuda: torch.cuda.reset_peak_memory_stats()
    metrics = run(cfg)
    peak = torch.cuda.max_memory_allocated() / 2**30 if cuda else None
    card = json.loads((out / "run.json").read_text())
    n_train, n_test, length = card["data"]["rows"]["train"], card["data"]["rows"]["test"], a.max_length
    clf = phi_cls.load_classifier(out / "lora", device=res.device)  # auto: 4-bit, as trained
    rows = pd.read_csv(Path(data) / "test.csv")
    clf.predict_proba(rows.head(8))  # warm-up
    start = time.perf_counter()
    clf.predict_proba(rows)
    predict_seconds = time.perf_counter() - start
    config = clf.clf.backbone.config
    step_flops = 2 * forward_flops(config, linear_params(config), length)  # per row: forward + input gradients
    train_seconds = metrics["lora"]["train_seconds"]
    return dict(resolved=dataclasses.asdict(res), attn_implementation=config._attn_implementation, rows=card["data"]["rows"], max_length=length,
                train_seconds=train_seconds, train_samples_per_s=n_train / train_seconds, train_tokens_per_s=n_train * length / train_seconds,
                train_flops=n_train * step_flops, train_flops_6n=n_train * (step_flops + 2 * linear_params(config) * length),
                probe_feature_seconds=metrics["probe"]["feature_seconds"],
                probe_features_examples_per_s=(n_train + n_test) / metrics["probe"]["feature_seconds"],
                predict_examples_per_s=n_test / predict_seconds, peak_gpu_memory_gb=peak,
                lora_accuracy=metrics["lora"]["accuracy"], probe_accuracy=metrics["probe"]["accuracy"])


def reference_run(a, model: str, data: str, out: Path) -> dict:
    "The reference way (benchmarks/reference.py) on the same device and rows: 4-bit LoRA training, then Trainer.predict."
    import pandas as pd, torch
    import reference
    from datasets import Dataset
    cuda = torch.cuda.is_available() and not a.dry_run
    train, test = (Dataset.from_pandas(pd.read_csv(Path(data) / f"{s}.csv")) for s in ("train", "test"))
    if cuda: torch.cuda.reset_peak_memory_stats()
    r = reference.lora_gpu(model, train, test, a.max_length, out, quantize=True, gpu=cuda)
    return dict(r, train_samples_per_s=len(train) / r["train_seconds"], train_tokens_per_s=r["train_tokens"] / r["train_seconds"],
                predict_examples_per_s=len(test) / r["predict_seconds"],
                peak_gpu_memory_gb=torch.cuda.max_memory_allocated() / 2**30 if cuda else None)


def summarise(a, ours: dict, ref: dict | None, gpu: str | None, seconds: float) -> dict:
    peak = peak_tflops(gpu)
    mfu = lambda flops: round(flops / ours["train_seconds"] / (peak * 1e12), 4) if peak else None
    note = None if peak else ("dry run on the CPU: no GPU peak, MFU is null" if a.dry_run else f"GPU {gpu!r} is not in PEAK_BF16_TFLOPS: MFU is null")
    return dict(gpu=gpu, dry_run=a.dry_run, model=a.model or ("tiny Phi-3 config, random weights" if a.dry_run else "Phi-4-mini shape, random weights"),
                peak_bf16_tflops=peak, mfu=mfu(ours["train_flops"]), mfu_6n=mfu(ours["train_flops_6n"]), mfu_note=note, goal_mfu=GOAL_MFU,
                phi_cls=ours, reference=ref, original_project=ORIGINAL, seconds=round(seconds, 1), python=platform.python_version())


def table(s: dict) -> str:
    o, r = s["phi_cls"], s["reference"] or {}
    f = lambda v, d=1: "-" if v is None else f"{v:.{d}f}"
    lines = [f"GPU check: {s['gpu'] or 'CPU (dry run)'}, {s['model']}, peak {s['peak_bf16_tflops'] or '-'} TFLOPS bf16",
             "| | reference | phi_cls |", "|---|---|---|",
             f"| LoRA training, samples/s | {f(r.get('train_samples_per_s'), 2)} | {f(o['train_samples_per_s'], 2)} |",
             f"| LoRA training, tokens/s | {f(r.get('train_tokens_per_s'), 0)} | {f(o['train_tokens_per_s'], 0)} |",
             f"| LoRA training, MFU (6N convention) | | {f(s['mfu'] and 100 * s['mfu'])}% ({f(s['mfu_6n'] and 100 * s['mfu_6n'])}%) |",
             f"| peak GPU memory, GB | {f(r.get('peak_gpu_memory_gb'))} | {f(o['peak_gpu_memory_gb'])} |",
             f"| prediction, examples/s | {f(r.get('predict_examples_per_s'), 2)} | {f(o['predict_examples_per_s'], 2)} |",
             f"| probe features, examples/s | | {f(o['probe_features_examples_per_s'], 2)} |",
             f"attention: {o['attn_implementation']}; optim {o['resolved']['optim']}; quantize {o['resolved']['quantize']}; "
             f"effective batch {o['resolved']['effective_batch']}; {o['max_length']} tokens per row; {s['seconds']} s in all"]
    if s["mfu_note"]: lines.append(s["mfu_note"])
    return "\n".join(lines)


def main(argv=None):
    a = parse(argv)
    import torch
    if not a.dry_run and not torch.cuda.is_available():
        sys.exit("gpu_check: no CUDA GPU here. Run it on a GPU machine, or with --dry-run to test the script on the CPU.")
    start, gpu = time.perf_counter(), (torch.cuda.get_device_name() if not a.dry_run else None)
    with tempfile.TemporaryDirectory(prefix="gpu_check-") as tmp:
        tmp = Path(tmp)
        (tmp / "data").mkdir(); (tmp / "model").mkdir()
        model = a.model or build_backbone(tmp / "model", a.dry_run, "cpu" if a.dry_run else "cuda")
        data = long_rows(tmp / "data", a.train_rows, a.test_rows)
        ours = phi_cls_run(a, model, data, tmp / "phi_cls")
        if not a.dry_run: torch.cuda.empty_cache()
        ref = None if a.no_reference else reference_run(a, model, data, tmp / "reference")
    s = summarise(a, ours, ref, gpu, time.perf_counter() - start)
    Path(a.out).parent.mkdir(parents=True, exist_ok=True)
    Path(a.out).write_text(json.dumps(s, indent=2, default=str))
    print(table(s))
    return s


if __name__ == "__main__":
    main()
