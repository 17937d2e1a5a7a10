"""phi_cls against the reference way (benchmarks/reference.py), side by side on the same rows and backbone.

    python benchmarks/bench.py            # the real measurement: 64 training rows, 16 test rows, 512 tokens (several minutes)
    python benchmarks/bench.py --quick    # under 2 minutes on 2 CPU cores
    python benchmarks/bench.py --emulate-avx2   # every kernel held to AVX2, as on an AVX2-only CPU (phi_cls then runs fp32)
    make bench / make bench-quick / make bench-avx2

Each phase runs in a fresh subprocess, one after the other, so that timings do not share warm caches and the peak
resident memory (VmHWM) of each phase is its own. Prints a table and writes JSON (default benchmarks/results.json).
"""
import argparse, json, os, subprocess, sys, tempfile, time
from pathlib import Path

HERE = Path(__file__).resolve().parent
PHASES = ["matmul", "ref_probe", "ours_probe", "ours_probe_workers", "ref_lora", "ours_lora", "ref_predict", "ours_predict",
          "ours_predict_workers", "ours_predict_b8", "ours_predict_b8_plain_malloc"]  # the last two: what two of our levers give, side by side
PHASE_ENV = {"ours_predict_b8_plain_malloc": {"PHI_CLS_TUNE_MALLOC": "0"}}
AVX2_ENV = {"ATEN_CPU_CAPABILITY": "avx2", "ONEDNN_MAX_CPU_ISA": "AVX2", "MKL_ENABLE_INSTRUCTIONS": "AVX2"}
TARGETS = {"native_bf16": dict(probe_speedup=6, lora_speedup=1.5, predict_speedup=2.2, probe_speedup_workers=10, predict_speedup_workers=4),
           "avx2": dict(probe_speedup=4, lora_speedup=1.15, predict_speedup=1.35)}


def parse(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--quick", action="store_true", help="small sizes: finishes in under 2 minutes on 2 CPU cores")
    p.add_argument("--model", default="embedded", help="backbone: embedded (SmolLM2-135M), tiny, or a local folder")
    p.add_argument("--n-train", type=int, help="training rows for the probe (default 64; quick 16)")
    p.add_argument("--n-test", type=int, help="test rows for probe and prediction (default 16; quick 4)")
    p.add_argument("--lora-rows", type=int, help="rows of one LoRA epoch (default 32 = one optimizer step of 8 x 4; quick 8)")
    p.add_argument("--max-length", type=int, help="tokens per row (default 512; quick 256)")
    p.add_argument("--precision", default="auto", choices=["auto", "bf16", "fp32"],
                   help="phi_cls's precision (default auto: bf16 on CPUs with native bf16, else fp32); the reference is always fp32")
    p.add_argument("--emulate-avx2", action="store_true",
                   help="run every phase as on an AVX2-only CPU (PyTorch, oneDNN and MKL kernels limited to AVX2; precision auto then picks fp32)")
    p.add_argument("--out", default=str(HERE / "results.json"), help="where to write the JSON results")
    p.add_argument("--phase", choices=PHASES, help=argparse.SUPPRESS)
    a = p.parse_args(argv)
    defaults = dict(n_train=16, n_test=4, lora_rows=8, max_length=256) if a.quick else dict(n_train=64, n_test=16, lora_rows=32, max_length=512)
    for k, v in defaults.items():
        if getattr(a, k) is None: setattr(a, k, v)
    a.accum = max(1, a.lora_rows // 8) if not a.quick else 1  # effective batch = 8 x accum, the same on both sides
    return a


# ---------------------------------------------------------------- phases (each runs in its own process)
def _rows(a):
    from phi_cls.data import load_champ, training_splits
    # the rows every earlier result was measured on: all of CHAMP, reference solutions included (--data champ-all)
    train, _, test = training_splits(load_champ(models_only=False), max_train_samples=max(a.n_train, a.lora_rows), max_eval_samples=a.n_test, seed=0)
    return train.select(range(a.n_train)), train.select(range(a.lora_rows)), test


def _ours(a, mode, epochs, workers=1):
    from phi_cls.model import load_backbone, load_tokenizer
    from phi_cls.config import TrainConfig
    from phi_cls.train import resolve
    cfg = TrainConfig(mode=mode, model=a.model, output_dir=tempfile.mkdtemp(), max_length=a.max_length, epochs=epochs,
                      batch_size=8, grad_accum=a.accum, progress=False, precision=a.precision, workers=workers)
    res = resolve(cfg)
    tok = load_tokenizer(a.model)
    return cfg, res, tok, load_backbone(a.model, res.device, res.quantize, res.precision)


def _tokenized(tok, max_length, **splits):
    from phi_cls.data import PromptEncoder, tokenize
    enc = PromptEncoder(tok, max_length)
    return {k: tokenize(v, enc) if v is not None else None for k, v in splits.items()}


def _accuracy(probs, labels):
    import numpy as np
    return float(((np.asarray(probs)[:, 1] >= 0.5).astype(int) == np.asarray(labels)).mean())


def forward_flops(config, linear_params: int, length: int) -> float:
    "Model FLOPs of one forward pass over `length` tokens: 2 per linear weight per token, plus causal attention."
    d_attn = config.num_attention_heads * getattr(config, "head_dim", config.hidden_size // config.num_attention_heads)
    attention = 2 * 2 * d_attn * config.num_hidden_layers * (length + 1) / 2  # QK^T and AV over the causal context
    return length * (2 * linear_params + attention)


def _linear_params(model) -> int:
    import torch
    return sum(m.weight.numel() for m in model.modules() if isinstance(m, torch.nn.Linear))


def phase_matmul(a):
    "The machine's matmul throughput (GFLOP/s) in fp32 and (where the CPU has it natively) bf16, best of a square GEMM and model-shaped ones."
    import torch
    from phi_cls.hardware import cpu_kind
    out = {"bf16_gflops": None}  # emulated bf16 (AVX2) runs at a few GFLOP/s and takes minutes to measure; phi_cls does not use it
    for name, dt in (("fp32", torch.float32), ("bf16", torch.bfloat16))[:2 if cpu_kind() == "native_bf16" else 1]:
        best = 0.0
        for m, k, n in ((2048, 2048, 2048), (4096, 576, 1536), (4096, 1536, 576)):
            x, w = torch.randn(m, k, dtype=dt), torch.randn(k, n, dtype=dt)
            x @ w
            t, reps = time.perf_counter(), 5
            for _ in range(reps): x @ w
            best = max(best, 2 * m * k * n * reps / (time.perf_counter() - t) / 1e9)
        out[f"{name}_gflops"] = round(best, 1)
    return out


def phase_ref_probe(a):
    import reference
    from phi_cls.model import resolve_model
    train, _, test = _rows(a)
    seconds, probs = reference.probe(resolve_model(a.model), train, test, a.max_length, tempfile.mkdtemp())
    return dict(seconds=seconds, accuracy=_accuracy(probs, test["label"]))


def phase_ours_probe(a, workers=1):
    "The 3-epoch probe end to end, in one process (`workers=1`) or with feature extraction in worker processes (their start included)."
    from phi_cls.train import train_probe
    train, _, test = _rows(a)
    cfg, res, tok, backbone = _ours(a, "probe", 3, workers)
    start = time.perf_counter()
    data = _tokenized(tok, a.max_length, train=train, validation=None, test=test)
    result = train_probe(cfg, backbone, tok, data, Path(cfg.output_dir), res)
    return dict(seconds=time.perf_counter() - start, accuracy=_accuracy(result.probs, test["label"]), precision=res.precision,
                feature_seconds=result.feature_seconds, workers=result.inference_workers["probe features"], probs_sha=_sha(result.probs))


def phase_ours_probe_workers(a): return phase_ours_probe(a, "auto")


def _sha(array) -> str:
    import hashlib, numpy as np
    return hashlib.sha256(np.ascontiguousarray(array).tobytes()).hexdigest()[:16]


def phase_ref_lora(a):
    import reference
    from phi_cls.model import resolve_model
    _, rows, _ = _rows(a)
    seconds, tokens = reference.lora_train(resolve_model(a.model), rows, a.max_length, tempfile.mkdtemp(), batch=8, accum=a.accum)
    return dict(seconds=seconds, tokens=tokens, examples=len(rows))


def phase_ours_lora(a):
    from phi_cls.train import lora_trainer
    _, rows, _ = _rows(a)
    cfg, res, tok, backbone = _ours(a, "lora", 1)
    data = _tokenized(tok, a.max_length, train=rows, validation=None)
    linear = _linear_params(backbone)  # before LoRA wraps the layers
    trainer = lora_trainer(cfg, backbone, tok, data, Path(cfg.output_dir), res)
    start = time.perf_counter()
    trainer.train()
    seconds = time.perf_counter() - start
    flops = 2 * sum(forward_flops(backbone.config, linear, n) for n in data["train"]["length"])  # forward + input gradients
    return dict(seconds=seconds, tokens=sum(data["train"]["length"]), examples=len(rows), flops=flops, precision=res.precision,
                micro_batch_size=res.micro_batch_size, accumulation_steps=res.accumulation_steps)


def phase_ref_predict(a):
    import reference
    from phi_cls.model import resolve_model
    _, _, test = _rows(a)
    seconds, n, tokens = reference.predict(resolve_model(a.model), test, a.max_length, tempfile.mkdtemp())
    return dict(seconds=seconds, examples=n, tokens=tokens)


def _predict_setup(a):
    "What every prediction phase starts from: settings, tokenizer, backbone, one seeded untrained head, tokenized test rows."
    import torch
    from phi_cls.model import PhiClassifier, freeze
    _, _, test = _rows(a)
    _, res, tok, backbone = _ours(a, "probe", 1)
    torch.manual_seed(0)  # the same (untrained) head in every prediction phase, so their logits compare
    clf = PhiClassifier(freeze(backbone)).eval()
    return res, tok, backbone, clf, _tokenized(tok, a.max_length, test=test)["test"]


def phase_ours_predict(a, batch_size=None):
    "Prediction with phi_cls's defaults (rows per forward pass: 2 on a CPU), or with `batch_size` rows per forward pass."
    from phi_cls.hardware import malloc_tuning_enabled
    from phi_cls.model import predict_logits
    res, tok, backbone, clf, ds = _predict_setup(a)
    batch_size = batch_size or res.eval_batch_size
    start = time.perf_counter()
    logits = predict_logits(clf, ds, tok.pad_token_id, batch_size, res.precision, progress=False)
    seconds = time.perf_counter() - start
    flops = sum(forward_flops(backbone.config, _linear_params(backbone), n) for n in ds["length"])
    return dict(seconds=seconds, examples=len(ds), tokens=sum(ds["length"]), flops=flops, precision=res.precision,
                batch_size=batch_size, malloc="tuned" if malloc_tuning_enabled() else "default", cpu_kind=res.cpu_kind,
                logits_sha=_sha(logits.numpy()))


def phase_ours_predict_workers(a):
    "Prediction in single-thread worker processes (workers=auto), timed once they have started (as in a long job); their start apart."
    import torch
    from phi_cls.workers import WorkerPool, choose_workers, model_bytes
    res, tok, backbone, clf, ds = _predict_setup(a)
    n, why = choose_workers("auto", res.device, 10 ** 6, model_bytes(backbone))  # as many as a long job gets here
    t = time.perf_counter()
    with WorkerPool(dict(model=a.model, precision=res.precision), n) as pool:
        startup = time.perf_counter() - t
        start = time.perf_counter()
        feats = pool.features(ds, tok.pad_token_id, res.eval_batch_size, progress=False)
        with torch.inference_mode(): logits = clf(features=feats).logits
        seconds = time.perf_counter() - start
    return dict(seconds=seconds, startup_seconds=startup, examples=len(ds), workers=n, why=why, precision=res.precision,
                batch_size=res.eval_batch_size, logits_sha=_sha(logits.numpy()))


def phase_ours_predict_b8(a): return phase_ours_predict(a, 8)
def phase_ours_predict_b8_plain_malloc(a): return phase_ours_predict(a, 8)  # run with PHI_CLS_TUNE_MALLOC=0


def _peak_rss_mb() -> float:
    for line in open("/proc/self/status"):
        if line.startswith("VmHWM"): return int(line.split()[1]) / 1024
    return float("nan")


# ---------------------------------------------------------------- driver
def run_phase(phase, argv, emulate_avx2=False):
    env = dict(os.environ, PYTHONPATH=f"{HERE}{os.pathsep}{os.environ.get('PYTHONPATH', '')}", **PHASE_ENV.get(phase, {}))
    if emulate_avx2: env.update(AVX2_ENV)
    proc = subprocess.run([sys.executable, __file__, "--phase", phase, *argv], capture_output=True, text=True, env=env)
    line = next((l for l in proc.stdout.splitlines() if l.startswith("BENCH_RESULT ")), None)
    if proc.returncode or line is None:
        raise SystemExit(f"bench: phase {phase} failed (exit {proc.returncode}):\n{proc.stderr[-3000:]}")
    return json.loads(line[len("BENCH_RESULT "):])


def summarise(r, a):
    kind = r["ours_predict"]["cpu_kind"]  # as the phase processes saw it (--emulate-avx2 changes it there)
    peak = r["matmul"]["bf16_gflops" if r["ours_predict"]["precision"] == "bf16" else "fp32_gflops"]
    predict_gflops = r["ours_predict"]["flops"] / r["ours_predict"]["seconds"] / 1e9
    lora_gflops = r["ours_lora"]["flops"] / r["ours_lora"]["seconds"] / 1e9
    s = dict(
        cpu_kind=kind, cpu_emulated=AVX2_ENV if a.emulate_avx2 else None, precision_ours=r["ours_predict"]["precision"], precision_reference="fp32",
        probe_speedup=r["ref_probe"]["seconds"] / r["ours_probe"]["seconds"],
        lora_speedup=(r["ours_lora"]["tokens"] / r["ours_lora"]["seconds"]) / (r["ref_lora"]["tokens"] / r["ref_lora"]["seconds"]),
        predict_speedup=(r["ours_predict"]["examples"] / r["ours_predict"]["seconds"]) / (r["ref_predict"]["examples"] / r["ref_predict"]["seconds"]),
        peak_rss_ratio=r["ours_lora"]["peak_rss_mb"] / r["ref_lora"]["peak_rss_mb"],
        peak_rss_mb_ours=r["ours_lora"]["peak_rss_mb"], peak_rss_mb_reference=r["ref_lora"]["peak_rss_mb"],
        probe_speedup_workers=r["ref_probe"]["seconds"] / r["ours_probe_workers"]["seconds"],
        predict_speedup_workers=(r["ours_predict_workers"]["examples"] / r["ours_predict_workers"]["seconds"]) / (r["ref_predict"]["examples"] / r["ref_predict"]["seconds"]),
        workers=dict(predict=r["ours_predict_workers"]["workers"], probe=r["ours_probe_workers"]["workers"]["processes"],
                     predict_startup_seconds=r["ours_predict_workers"]["startup_seconds"],
                     predict_same_logits=r["ours_predict_workers"]["logits_sha"] == r["ours_predict"]["logits_sha"],
                     probe_same_probs=r["ours_probe_workers"]["probs_sha"] == r["ours_probe"]["probs_sha"]),
        accuracy_ours=r["ours_probe"]["accuracy"], accuracy_reference=r["ref_probe"]["accuracy"],
        matmul_gflops=peak, predict_gflops=predict_gflops, lora_train_gflops=lora_gflops,
        roofline_fraction=predict_gflops / peak, roofline_fraction_lora=lora_gflops / peak,
        predict_levers={f"{k}: {r[p]['batch_size']} rows per forward, {r[p]['malloc']} malloc": r[p]["examples"] / r[p]["seconds"]
                        for k, p in (("before", "ours_predict_b8_plain_malloc"), ("+ malloc tuning", "ours_predict_b8"),
                                     ("+ small forward batches (phi_cls)", "ours_predict"))},
        sizes=dict(n_train=a.n_train, n_test=a.n_test, lora_rows=a.lora_rows, max_length=a.max_length, effective_batch=8 * a.accum,
                   model=a.model, quick=a.quick),
    )
    s["targets"] = TARGETS.get(kind, {})
    s["targets_met"] = {k: s[k] >= v for k, v in s["targets"].items()}
    s["targets_met"]["peak_rss_ratio"] = s["peak_rss_ratio"] <= 0.5
    s["targets_met"]["accuracy_within_1_point_or_better"] = s["accuracy_ours"] >= s["accuracy_reference"] - 0.01
    return s


def table(s, r):
    rows = [("probe, 3 epochs end to end (s)", r["ref_probe"]["seconds"], r["ours_probe"]["seconds"], s["probe_speedup"]),
            ("LoRA training (tokens/s)", r["ref_lora"]["tokens"] / r["ref_lora"]["seconds"], r["ours_lora"]["tokens"] / r["ours_lora"]["seconds"], s["lora_speedup"]),
            ("prediction (examples/s)", r["ref_predict"]["examples"] / r["ref_predict"]["seconds"], r["ours_predict"]["examples"] / r["ours_predict"]["seconds"], s["predict_speedup"]),
            (f"probe, workers=auto: {s['workers']['probe']} process(es) (s)", r["ref_probe"]["seconds"], r["ours_probe_workers"]["seconds"], s["probe_speedup_workers"]),
            (f"prediction, {s['workers']['predict']} workers (examples/s)", r["ref_predict"]["examples"] / r["ref_predict"]["seconds"],
             r["ours_predict_workers"]["examples"] / r["ours_predict_workers"]["seconds"], s["predict_speedup_workers"]),
            ("LoRA training peak RSS (MB)", r["ref_lora"]["peak_rss_mb"], r["ours_lora"]["peak_rss_mb"], s["peak_rss_ratio"]),
            ("probe test accuracy", s["accuracy_reference"], s["accuracy_ours"], None)]
    lines = [f"cpu: {s['cpu_kind']}{' (emulated on this CPU: kernels limited to AVX2)' if s['cpu_emulated'] else ''}  ours: {s['precision_ours']}  reference: fp32  sizes: {s['sizes']}",
             f"{'':34}{'reference':>12}{'phi_cls':>12}{'ratio':>9}"]
    lines += [f"{name:34}{ref:12.2f}{ours:12.2f}{'' if ratio is None else f'{ratio:8.2f}x'}" for name, ref, ours, ratio in rows]
    lines.append(f"roofline: matmul {s['matmul_gflops']:.0f} GFLOP/s; prediction {s['predict_gflops']:.0f} GFLOP/s "
                 f"({100 * s['roofline_fraction']:.0f}%), LoRA training {s['lora_train_gflops']:.0f} GFLOP/s ({100 * s['roofline_fraction_lora']:.0f}%)")
    base = next(iter(s["predict_levers"].values()))  # the first lever row is the "before"
    lines.append("prediction levers, side by side (examples/s): " + "; ".join(f"{k} {v:.2f} ({v / base:.2f}x)" for k, v in s["predict_levers"].items()))
    w = s["workers"]
    lines.append(f"workers: started in {w['predict_startup_seconds']:.1f} s (not in the prediction figure; in the probe's); "
                 f"same logits as one process: {w['predict_same_logits']}, same probe probabilities: {w['probe_same_probs']}")
    lines.append("targets: " + ", ".join(f"{k} {'met' if v else 'MISSED'}" for k, v in s["targets_met"].items()))
    return "\n".join(lines)


def main(argv=None):
    argv = sys.argv[1:] if argv is None else argv
    a = parse(argv)
    if a.phase:
        result = globals()[f"phase_{a.phase}"](a)
        print("BENCH_RESULT " + json.dumps(dict(result, peak_rss_mb=_peak_rss_mb())))
        return
    passthrough = [x for x in argv if x != "--phase"]
    results = {}
    for phase in PHASES:
        t = time.perf_counter()
        results[phase] = run_phase(phase, passthrough, a.emulate_avx2)
        print(f"bench: {phase} done in {time.perf_counter() - t:.0f} s", file=sys.stderr, flush=True)
    summary = summarise(results, a)
    print(table(summary, results))
    Path(a.out).parent.mkdir(parents=True, exist_ok=True)
    Path(a.out).write_text(json.dumps(dict(summary, phases=results), indent=2))
    print(f"bench: wrote {a.out}")


if __name__ == "__main__":
    main()
