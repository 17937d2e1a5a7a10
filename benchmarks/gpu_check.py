"""One GPU check: the recipe's experiment 2 (LoRA) and the probe on a Phi-4-mini-shaped backbone, as phi_cls runs them.

    python benchmarks/gpu_check.py --out gpu_check.json             # on one CUDA GPU, under 8 minutes, no download
    python benchmarks/gpu_check.py --sweep --out gpu_sweep.json     # + the settings table of issue 26, steady-state timing
    python benchmarks/gpu_check.py --model /path/to/Phi-4-mini-instruct --out gpu_check.json   # the real weights, if a copy is here
    python benchmarks/gpu_check.py --dry-run --sweep --out /tmp/dry.json   # the same code on the CPU with the tiny config (the CI test)
    make gpu-check

Without --model it builds Phi-4-mini's shape (32 layers, hidden 3072, 24 heads / 8 KV heads, intermediate 8192, vocabulary 200064,
partial rotary 0.75, tied embeddings) with random weights, saves it with a tokenizer to a temporary folder and passes that folder to
phi_cls as `model`. Rows are real gsm8k-pairs questions and solutions (cut at --max-length), so their lengths vary as in use.
The default check runs `phi_cls.train.run` (probe + LoRA) with phi_cls's own `auto` settings (the memory plan picks precision, micro
batch and checkpointing for this GPU), then times prediction from text with the saved LoRA classifier, and the reference way
(benchmarks/reference.py: 4-bit, gradient checkpointing, 8 x 4) on the same GPU and rows, its prediction timed from text too.
--sweep then times LoRA training steps for the reference and for each setting of SWEEP (default, 4-bit / bf16, micro batch,
checkpointing, Liger, length grouping, torch.compile): each in this process after --warmup optimizer steps, over --steps timed steps;
the two halves of the timed steps must agree within a few percent (`steady` in the JSON says by how much). Each row records the
memory plan's predicted peak beside the measured one. MFU is model FLOPs (forward + input gradients: 4 per linear weight per token
plus causal attention, the work a frozen-base LoRA step needs; `mfu_6n` also counts weight gradients, the usual 6N convention) over
the GPU's dense bf16 peak from PEAK_BF16_TFLOPS; an unknown GPU gets MFU null. Tokens are the rows' real (unpadded) tokens.
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
    p.add_argument("--sweep", action="store_true", help="also time LoRA steps for the reference and each setting of SWEEP")
    p.add_argument("--warmup", type=int, help="sweep: optimizer steps run before timing (default 3; dry run 1)")
    p.add_argument("--steps", type=int, help="sweep: optimizer steps timed (default 8; dry run 2)")
    a = p.parse_args(argv)
    for k, full, dry in (("train_rows", 256, 8), ("test_rows", 128, 4), ("max_length", 512, 128), ("warmup", 3, 1), ("steps", 8, 2)):
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


def real_rows(folder: Path, n_train: int, n_test: int) -> str:
    "train.csv and test.csv of real gsm8k-pairs rows (the first n of each split, repeated only if more are asked for than it has)."
    from phi_cls.data import load_data
    pairs = load_data("gsm8k-pairs")
    for split, n in (("train", n_train), ("test", n_test)):
        df = pairs[split].to_pandas()
        df = df.iloc[[i % len(df) for i in range(n)]].reset_index(drop=True)
        df["question"] = [f"(row {i}) {q}" if i >= len(pairs[split]) else q for i, q in enumerate(df["question"])]  # distinct
        df["index"] = range(len(df))
        df[["index", "question", "solution", "label"]].to_csv(folder / f"{split}.csv", index=False)
    return str(folder)


def row_lengths(model: str, csv: Path, max_length: int) -> list:
    "Tokens of each row of `csv` as phi_cls feeds it (the recipe's prompt, cut at max_length): the real, unpadded work."
    import pandas as pd
    from phi_cls.data import PromptEncoder
    from phi_cls.model import load_tokenizer
    rows = pd.read_csv(csv)
    return [len(ids) for ids in PromptEncoder(load_tokenizer(model), max_length)(rows["question"], rows["solution"])["input_ids"]]


def step_flops(config, lengths) -> tuple:
    "(forward + input-gradient FLOPs, the 6N count) of one training pass over rows of these lengths."
    from bench import forward_flops
    n = linear_params(config)
    four = sum(2 * forward_flops(config, n, L) for L in lengths)
    return four, four + sum(2 * n * L for L in lengths)


def phi_cls_run(a, model: str, data: str, out: Path) -> dict:
    "Probe + LoRA through phi_cls.train.run with phi_cls's auto settings, then prediction from text with the saved LoRA classifier."
    import pandas as pd, torch
    import phi_cls
    from phi_cls.train import TrainConfig, resolve, run
    cuda = torch.cuda.is_available() and not a.dry_run
    cfg = TrainConfig(mode="both", model=model, data=data, output_dir=str(out), max_length=a.max_length, epochs=1, batch_size=8,
                      grad_accum=4, learning_rate=2e-4, lora_r=16, lora_alpha=32, progress=False, allow_leakage=True,
                      device="cuda" if cuda else "cpu", max_train_samples=a.train_rows, keep_validation=False)
    res = resolve(cfg)
    if cuda: torch.cuda.reset_peak_memory_stats()
    metrics = run(cfg)
    peak = torch.cuda.max_memory_allocated() / 2**30 if cuda else None
    card = json.loads((out / "run.json").read_text())
    n_train, n_test = card["data"]["rows"]["train"], card["data"]["rows"]["test"]
    clf = phi_cls.load_classifier(out / "lora", device=res.device)  # auto: as trained
    rows = pd.read_csv(Path(data) / "test.csv")
    clf.predict_proba(rows.head(8))  # warm-up
    start = time.perf_counter()
    clf.predict_proba(rows)  # from text: tokenizing included
    predict_seconds = time.perf_counter() - start
    config = clf.clf.backbone.config
    lengths = row_lengths(model, Path(data) / "train.csv", a.max_length)[:n_train]
    flops, flops_6n = step_flops(config, lengths)
    train_seconds = metrics["lora"]["train_seconds"]
    return dict(resolved=dataclasses.asdict(res), kernels=card["resolved"].get("kernels"), attn_implementation=config._attn_implementation,
                rows=card["data"]["rows"], max_length=a.max_length, mean_tokens=sum(lengths) / len(lengths),
                train_seconds=train_seconds, train_samples_per_s=n_train / train_seconds, train_tokens_per_s=sum(lengths) / train_seconds,
                train_flops=flops, train_flops_6n=flops_6n,
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


# The sweep's settings: (name, TrainConfig overrides). "B" and "E" stand for the recipe's batch (8) and effective batch (32);
# a dry run scales them down. The first row is phi_cls's default: its auto settings on this GPU.
SWEEP = [("phi_cls default (auto)", {}),
         ("4-bit, checkpointing, B x E/B", dict(quantize="4bit", gradient_checkpointing=True, micro_batch_size="B")),
         ("4-bit, B x E/B", dict(quantize="4bit", gradient_checkpointing=False, micro_batch_size="B")),
         ("4-bit, E x 1", dict(quantize="4bit", gradient_checkpointing=False, micro_batch_size="E")),
         ("bf16, B x E/B", dict(quantize="none", gradient_checkpointing=False, micro_batch_size="B")),
         ("bf16, E x 1", dict(quantize="none", gradient_checkpointing=False, micro_batch_size="E")),
         ("default, no Liger", dict(liger=False)),
         ("default, no length grouping", dict(group_by_length=False)),
         ("default, torch.compile", dict(compile=True))]


def batches(a) -> tuple:
    "(batch, effective batch) of the sweep: the recipe's 8 and 32, or 1 and 2 in a dry run."
    return (1, 2) if a.dry_run else (8, 32)


def sweep_rows(a) -> int:
    "Training rows each sweep row uses: warm-up and timed optimizer steps of one effective batch each."
    return (a.warmup + a.steps) * batches(a)[1] if a.sweep else 0


class StepTimer:
    "A TrainerCallback that notes when each optimizer step ends (after the GPU has finished it)."
    def __new__(cls):
        from transformers import TrainerCallback
        class _Timer(TrainerCallback):
            def __init__(self): self.ends = []
            def on_train_begin(self, args, state, control, **kw): self.ends = [_now()]
            def on_step_end(self, args, state, control, **kw): self.ends.append(_now())
        return _Timer()


def _now() -> float:
    import torch
    if torch.cuda.is_available(): torch.cuda.synchronize()
    return time.perf_counter()


def steady_rate(ends: list, warmup: int, rows_per_step: int) -> dict:
    "Rows/s over the steps after `warmup`, and how far apart the rates of the timed steps' two halves are (relative)."
    timed = ends[warmup:]
    half = (len(timed) - 1) // 2
    rate = lambda t: rows_per_step * (len(t) - 1) / (t[-1] - t[0])
    first, second = rate(timed[:half + 1]), rate(timed[half:])
    return dict(samples_per_s=rate(timed), steady=round(abs(first - second) / max(first, second), 4), timed_steps=len(timed) - 1)


def _overrides(spec: dict, a) -> dict:
    b, e = batches(a)
    return {k: {"B": b, "E": e}.get(v, v) if k == "micro_batch_size" else v for k, v in spec.items()}


def time_setting(a, model: str, data: str, out: Path, spec: dict) -> dict:
    "One sweep row: phi_cls's LoRA trainer with `spec` over the sweep's rows, warm-up steps first, then timed steps."
    import torch
    from phi_cls.hardware import apply_kernels
    from phi_cls.model import load_backbone, load_tokenizer
    from phi_cls.train import TrainConfig, lora_trainer, prepare_data
    from phi_cls.trainer import gpu_plan, resolve
    cuda, (b, e) = torch.cuda.is_available() and not a.dry_run, batches(a)
    cfg = TrainConfig(mode="lora", model=model, data=data, output_dir=str(out), max_length=a.max_length, epochs=1, batch_size=b,
                      grad_accum=e // b, progress=False, allow_leakage=True, keep_validation=False, device="cuda" if cuda else "cpu",
                      max_train_samples=sweep_rows(a), max_eval_samples=2, **_overrides(spec, a))
    res = resolve(cfg)
    plan = gpu_plan(cfg, torch.device(res.device), res.precision, res.processes) if cuda else None
    tok = load_tokenizer(model)
    data_, _, _ = prepare_data(cfg, tok)
    if cuda: torch.cuda.empty_cache(); torch.cuda.reset_peak_memory_stats()
    backbone = load_backbone(model, res.device, res.quantize, res.precision, cfg.attn_implementation)
    kernels = apply_kernels(backbone, cfg.liger, cfg.compile)
    trainer = lora_trainer(cfg, backbone, tok, data_, out, res)
    trainer.args.save_strategy = "no"
    timer = StepTimer()
    trainer.add_callback(timer)
    trainer.train()
    rate = steady_rate(timer.ends, a.warmup, e)
    lengths = list(data_["train"]["length"])
    flops, flops_6n = step_flops(backbone.config, lengths)
    per_row = len(lengths) / (flops / 1e12), len(lengths) / (flops_6n / 1e12)  # rows per TFLOP
    row = dict(rate, quantize=res.quantize, micro_batch_size=res.micro_batch_size, accumulation_steps=res.accumulation_steps,
               gradient_checkpointing=res.gradient_checkpointing, group_by_length=cfg.group_by_length, kernels=kernels,
               tokens_per_s=rate["samples_per_s"] * sum(lengths) / len(lengths),
               tflops=rate["samples_per_s"] / per_row[0], tflops_6n=rate["samples_per_s"] / per_row[1],
               peak_gpu_memory_gb=torch.cuda.max_memory_allocated() / 2**30 if cuda else None,
               predicted_peak_gb=plan.peak_gib if plan else None, memory=res.memory)
    del trainer, backbone
    if cuda: torch.cuda.empty_cache()
    return row


def time_reference(a, model: str, data: str, out: Path) -> dict:
    "The reference way's LoRA steps (4-bit, gradient checkpointing, B x E/B) over the sweep's rows, timed like the others."
    import pandas as pd, torch
    import reference
    from datasets import Dataset
    cuda, (b, e) = torch.cuda.is_available() and not a.dry_run, batches(a)
    train = Dataset.from_pandas(pd.read_csv(Path(data) / "train.csv").head(sweep_rows(a)))
    test = Dataset.from_pandas(pd.read_csv(Path(data) / "test.csv").head(2))
    if cuda: torch.cuda.empty_cache(); torch.cuda.reset_peak_memory_stats()
    timer = StepTimer()
    reference.lora_gpu(model, train, test, a.max_length, out, quantize=True, gpu=cuda, batch=b, accum=e // b, callbacks=[timer])
    return dict(steady_rate(timer.ends, a.warmup, e), quantize="4bit", micro_batch_size=b, accumulation_steps=e // b,
                gradient_checkpointing=True, peak_gpu_memory_gb=torch.cuda.max_memory_allocated() / 2**30 if cuda else None)


def sweep(a, model: str, data: str, tmp: Path) -> list:
    "The reference and every SWEEP setting, one after another in this process (CUDA start-up is paid by the first warm-up)."
    b, e = batches(a)
    rows = []
    if not a.no_reference:
        rows.append(dict(name=f"reference way (4-bit, checkpointing, {b} x {e // b})", **time_reference(a, model, data, tmp / "sweep-ref")))
    for i, (name, spec) in enumerate(SWEEP):
        name = name.replace("B x E/B", f"{b} x {e // b}").replace("E x 1", f"{e} x 1")
        try: rows.append(dict(name=name, **time_setting(a, model, data, tmp / f"sweep-{i}", spec)))
        except Exception as err:  # one setting that cannot run here (out of memory, say) does not stop the others
            rows.append(dict(name=name, error=f"{type(err).__name__}: {str(err).splitlines()[0][:300]}"))
            import torch
            if torch.cuda.is_available(): torch.cuda.empty_cache()
    return rows


def sweep_table(s: dict) -> str:
    f = lambda v, d=1: "-" if v is None else f"{v:.{d}f}"
    peak = s["peak_bf16_tflops"]
    lines = [f"Settings sweep: {s['gpu'] or 'CPU (dry run)'}, {s['sweep_steps']}", "| LoRA training setting (same rows, same GPU) | samples/s | "
             "MFU (4N count) | peak GPU memory, GiB (predicted) | steady (halves apart) |", "|---|---|---|---|---|"]
    for r in s["sweep"]:
        if "error" in r: lines.append(f"| {r['name']} | failed: {r['error']} | | | |"); continue
        mfu = f"{100 * r['tflops'] / peak:.1f}%" if peak and r.get("tflops") else "-"
        lines.append(f"| {r['name']} | {f(r['samples_per_s'], 2)} | {mfu} | {f(r.get('peak_gpu_memory_gb'))} ({f(r.get('predicted_peak_gb'))}) "
                     f"| {100 * r['steady']:.1f}% |")
    default = next((r for r in s["sweep"] if r["name"].startswith("phi_cls default") and "memory" in r), None)
    if default and default.get("memory"): lines.append(f"default's memory plan: {default['memory']}")
    return "\n".join(lines)


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
             f"micro batch {o['resolved']['micro_batch_size']} x {o['resolved']['accumulation_steps']}; "
             f"checkpointing {'on' if o['resolved'].get('gradient_checkpointing') else 'off'}; "
             f"{o['mean_tokens']:.0f} tokens per row on average (at most {o['max_length']}); {s['seconds']} s in all"]
    if o["resolved"].get("memory"): lines.append(f"memory plan: {o['resolved']['memory']}")
    lines += [f"kernels: {k}" for k in o.get("kernels") or []]
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
        data = real_rows(tmp / "data", max(a.train_rows, sweep_rows(a)), a.test_rows)
        ours = phi_cls_run(a, model, data, tmp / "phi_cls")
        if not a.dry_run: torch.cuda.empty_cache()
        ref = None if a.no_reference else reference_run(a, model, data, tmp / "reference")
        swept = sweep(a, model, data, tmp) if a.sweep else None
    s = summarise(a, ours, ref, gpu, time.perf_counter() - start)
    if swept is not None: s.update(sweep=swept, sweep_steps=f"{a.warmup} warm-up + {a.steps} timed optimizer steps per row, {a.max_length} tokens at most")
    Path(a.out).parent.mkdir(parents=True, exist_ok=True)
    Path(a.out).write_text(json.dumps(s, indent=2, default=str))
    print(table(s))
    if swept is not None: print(sweep_table(s))
    return s


if __name__ == "__main__":
    main()
