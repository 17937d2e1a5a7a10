"""The README's quality table: shortcut baselines, checker, probe, LoRA and hybrid on the fair test splits of both
embedded datasets, with the embedded backbone and 95% bootstrap intervals.

    python benchmarks/quality.py                 # both datasets (about 25 minutes on 2 idle CPU cores)
    python benchmarks/quality.py --data champ    # one of them
    python benchmarks/quality.py --types         # three classes on gsm8k-pairs, beside the same run with two
    make quality

Each dataset is one `phi-cls train --mode both --checker` run (settings in RUNS, shared ones in COMMON) into
outputs/quality/<data>/; everything is fitted on train, every decision (probe layer, best epoch, threshold,
temperature, hybrid rule) is chosen on validation, and only the test rows are reported. Writes benchmarks/quality.md
(the table, the settings and the machine) and benchmarks/quality.csv (every number).

`--types` measures the K-class classifier instead: gsm8k-pairs with labels=types (correct / computational /
conceptual) and the same run with two classes, at the size in TYPES (about 15 minutes on 2 busy CPU cores), into
outputs/quality/types/{types,binary}/; it writes benchmarks/quality_types.{md,csv}: per signal the K-class metrics,
its binary view (correct against any error) and the binary run's figures on the same rows.

`--steps` measures where a solution first goes wrong (ProcessBench's scores: accuracy on flawed rows (exact first wrong
step), accuracy on correct rows, F1 of the two) on both datasets' test splits at the size in STEPS: checker, probe,
LoRA and hybrids beside the trivial baselines, and the checker's localisation (of the rows it flags, is its step the
first wrong one, later, or earlier); into outputs/quality/steps/<data>/, writing benchmarks/quality_steps.{md,csv}.
"""
import argparse, json, platform, subprocess, sys, time
from pathlib import Path

import pandas as pd

HERE = Path(__file__).resolve().parent
COMMON = dict(mode="both", model="embedded", checker=True, keep_validation=True, probe_layer="best", grad_accum=1,
              seed=42, progress=False)
# gsm8k-pairs: a seeded sample of 300 of its 800 test rows and 300 of its 400 validation rows; champ: all 108 test and
# 54 validation rows (the model-written solutions). Training rows are capped so that LoRA's 3 epochs fit in minutes.
RUNS = {"gsm8k-pairs": dict(max_train_samples=256, max_eval_samples=300, max_length=384),
        "champ": dict(max_train_samples=128, max_length=512)}
NAMES = {"probe": "probe", "lora": "LoRA"}
# --types: one gsm8k-pairs run with labels=types and one with two classes, same rows and settings: 64 training rows,
# seeded samples of 100 validation and 100 test rows, 192 tokens, one epoch; small so that both runs take minutes on
# 2 CPU cores (chosen for time, not for quality)
TYPES = dict(data="gsm8k-pairs", max_train_samples=64, max_eval_samples=100, max_length=192, epochs=1)
# --steps: the step head on both datasets, a step per line, the probe on the last layer (steps score every step on
# one layer, so probe_layer='best' is not used); seeded samples of 100 validation and 100 test rows (CHAMP:
# all of its 54 and 108), 96 training rows, one epoch, chosen for time (minutes per run on 2 CPU cores), not quality
STEPS = {"gsm8k-pairs": dict(max_train_samples=96, max_eval_samples=100, max_length=256, epochs=1),
         "champ": dict(max_train_samples=96, max_eval_samples=108, max_length=512, epochs=1)}


def parse(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--data", nargs="+", default=list(RUNS), choices=list(RUNS), help="embedded datasets to measure")
    p.add_argument("--out-dir", default="outputs/quality", help="folder for the run folders (one per dataset)")
    p.add_argument("--table", help="writes TABLE.md and TABLE.csv (default: benchmarks/quality, or quality_types)")
    p.add_argument("--model", default=COMMON["model"], help="backbone (default: embedded SmolLM2-135M-Instruct)")
    p.add_argument("--max-train-samples", type=int, help="override the per-dataset training cap (for a quick look)")
    p.add_argument("--max-eval-samples", type=int, help="cap test and validation rows (default: all of them)")
    p.add_argument("--max-length", type=int, help="override the per-dataset token budget")
    p.add_argument("--epochs", type=float, help="override the recipe's 3 epochs")
    p.add_argument("--types", action="store_true",
                   help="three classes (labels=types) on gsm8k-pairs beside the same run with two; "
                        "writes benchmarks/quality_types.{md,csv} unless --table is given")
    p.add_argument("--steps", action="store_true",
                   help="the first wrong step (ProcessBench's F1) on both datasets; "
                        "writes benchmarks/quality_steps.{md,csv} unless --table is given")
    p.add_argument("--from-runs", action="store_true",
                   help="train nothing: build the table from the finished run folders in --out-dir")
    return p.parse_args(argv)


def settings(a, data:str) -> dict:
    "The TrainConfig fields of one dataset's run."
    s = dict(COMMON, **RUNS[data], data=data, model=a.model, output_dir=str(Path(a.out_dir) / data), overwrite=True)
    for k in ("max_train_samples", "max_eval_samples", "max_length", "epochs"):
        if getattr(a, k) is not None: s[k] = getattr(a, k)
    return s


def types_settings(a, labels:str) -> dict:
    "The TrainConfig fields of the --types run with `labels` (types or binary)."
    s = dict(COMMON, **TYPES, labels=labels, model=a.model, output_dir=str(Path(a.out_dir) / "types" / labels),
             overwrite=True)
    for k in ("max_train_samples", "max_eval_samples", "max_length", "epochs"):
        if getattr(a, k) is not None: s[k] = getattr(a, k)
    return s


def _interval(m:dict, key:str) -> str:
    lo, hi = ((m.get("intervals") or {}).get(key) or [None, None])
    v = m.get(key)
    if v is None: return "-"
    return f"{v:.3f} ({lo:.2f}-{hi:.2f})" if lo is not None else f"{v:.3f}"


def signal_rows(metrics:dict, data:str) -> list:
    "One row per signal of a run's metrics.json: shortcuts first, then the checker, the classifiers and the hybrids."
    row = lambda signal, kind, m: dict(data=data, signal=signal, kind=kind, m=m)
    shortcuts = metrics.get("baselines", {}).get("results", {}).values()
    rows = [row(r["baseline"], "shortcut", r) for r in shortcuts]
    modes = [mode for mode in NAMES if mode in metrics]
    checker = next((metrics[mode]["checker"] for mode in modes if "checker" in metrics[mode]), None)
    if checker: rows.append(row("checker", "checker", checker))
    rows += [row(NAMES[mode], "classifier", metrics[mode]) for mode in modes]
    for mode in modes:
        h = metrics[mode].get("hybrid")
        if h: rows.append(row(f"hybrid ({NAMES[mode]}; {h.get('rule', '?')})", "hybrid", h))
    return rows


def frame(rows:list) -> pd.DataFrame:
    "Every number of the table, one row per (dataset, signal)."
    out = []
    for r in rows:
        m, ci = r["m"], (r["m"].get("intervals") or {})
        out.append(dict(data=r["data"], signal=r["signal"], kind=r["kind"], n=m.get("n"),
                        **{k: m.get(k) for k in ("accuracy", "balanced_accuracy", "f1", "auroc")},
                        **{f"{k}_{e}": (ci.get(k) or [None, None])[i] for k in ("balanced_accuracy", "auroc")
                           for i, e in enumerate(("low", "high"))}))
    return pd.DataFrame(out)


def markdown(rows:list) -> str:
    "The table as markdown: accuracy, balanced accuracy and AUROC with 95% intervals, F1 of flawed."
    lines = ["| data | signal | accuracy | balanced accuracy (95% CI) | F1 flawed | AUROC (95% CI) |",
             "|---|---|---|---|---|---|"]
    for r in rows:
        m = r["m"]
        bold = "**" if r["kind"] in ("classifier", "hybrid") else ""
        f1 = "-" if m.get("f1") is None else f"{m['f1']:.3f}"
        acc = "-" if m.get("accuracy") is None else f"{m['accuracy']:.3f}"
        cells = [r["data"], f"{bold}{r['signal']}{bold}", acc, _interval(m, "balanced_accuracy"), f1,
                 _interval(m, "auroc")]
        lines.append(f"| {' | '.join(cells)} |")
    return "\n".join(lines)


def _machine() -> str:
    from phi_cls.hardware import cpu_kind
    import os
    return f"{platform.machine()} CPU, {len(os.sched_getaffinity(0))} cores, cpu_kind {cpu_kind()}"


def _commit() -> str:
    git = ["git", "rev-parse", "--short", "HEAD"]
    try: return subprocess.run(git, capture_output=True, text=True, cwd=HERE).stdout.strip()
    except OSError: return "?"


def _note(run_dir:Path, data:str, metrics:dict) -> str:
    "One line on a finished run: how long it took, the test rows, its settings and the probe layer chosen."
    card = json.loads((run_dir / "run.json").read_text())
    shown = {k: v for k, v in card["config"].items() if k in ("mode", "model", "labels", "max_train_samples",
                                                              "max_eval_samples",
                                                              "max_length", "epochs", "batch_size", "grad_accum",
                                                              "probe_layer", "keep_validation", "checker", "seed")}
    n = (metrics.get("probe") or metrics.get("lora", {})).get("n")
    layer = metrics.get("probe", {}).get("layer")
    chosen = f"; probe layer chosen on validation: {layer}" if layer is not None else ""
    git = card.get("git") or {}
    chosen += f"; commit {str(git.get('commit'))[:7]}{' (with local changes)' if git.get('dirty') else ''}"
    return (f"- {data}: {card.get('seconds', {}).get('total', 0):.0f} s in all; test rows {n}; "
            f"settings {json.dumps(shown)}{chosen}")


def signals(metrics:dict) -> dict:
    "name -> metrics of every signal of a run: shortcuts, the checker, the classifiers, the hybrids (rule left out)."
    out = {r["baseline"]: r for r in metrics.get("baselines", {}).get("results", {}).values()}
    modes = [mode for mode in NAMES if mode in metrics]
    checker = next((metrics[mode]["checker"] for mode in modes if "checker" in metrics[mode]), None)
    if checker: out["checker"] = checker
    out.update({NAMES[mode]: metrics[mode] for mode in modes})
    out.update({f"hybrid ({NAMES[mode]})": metrics[mode]["hybrid"] for mode in modes if "hybrid" in metrics[mode]})
    return out


def types_frame(k_metrics:dict, b_metrics:dict) -> pd.DataFrame:
    "One row per signal: K-class metrics, per-class recall, the binary view and the binary run's figures."
    ks, bs, rows = signals(k_metrics), signals(b_metrics), []
    for name, m in ks.items():
        ci, view, b = m.get("intervals") or {}, m.get("binary") or {}, bs.get(name) or {}
        row = dict(signal=name, n=m.get("n"), **{k: m.get(k) for k in ("accuracy", "balanced_accuracy", "macro_f1",
                                                                        "auroc")},
                   balanced_accuracy_low=(ci.get("balanced_accuracy") or [None, None])[0],
                   balanced_accuracy_high=(ci.get("balanced_accuracy") or [None, None])[1],
                   **{f"recall {c}": v.get("recall") for c, v in (m.get("per_class") or {}).items()},
                   binary_view_balanced_accuracy=view.get("balanced_accuracy"), binary_view_auroc=view.get("auroc"),
                   binary_run_balanced_accuracy=b.get("balanced_accuracy"), binary_run_auroc=b.get("auroc"))
        for key, src in (("binary_view", view), ("binary_run", b)):
            lo, hi = ((src.get("intervals") or {}).get("balanced_accuracy") or [None, None])
            row.update({f"{key}_balanced_accuracy_low": lo, f"{key}_balanced_accuracy_high": hi})
        rows.append(row)
    return pd.DataFrame(rows)


def types_markdown(df:pd.DataFrame) -> str:
    "The K-class table as markdown, the binary view and the binary run side by side."
    f = lambda v: "-" if v is None or pd.isna(v) else f"{v:.3f}"
    ci = lambda r, k: (f"{f(r[k])} ({r[k + '_low']:.2f}-{r[k + '_high']:.2f})" if pd.notna(r.get(k + "_low"))
                       else f(r[k]))
    recalls = [c for c in df.columns if c.startswith("recall ")]
    lines = ["| signal | accuracy | balanced accuracy (95% CI) | macro-F1 | " + " | ".join(recalls)
             + " | AUROC (one-vs-rest) | binary view: bal. acc. (95% CI) | binary view: AUROC "
             "| binary run: bal. acc. (95% CI) | binary run: AUROC |", "|---" * (9 + len(recalls)) + "|"]
    for _, r in df.iterrows():
        cells = [r["signal"], f(r["accuracy"]), ci(r, "balanced_accuracy"), f(r["macro_f1"]),
                 *[f(r[c]) for c in recalls], f(r["auroc"]), ci(r, "binary_view_balanced_accuracy"),
                 f(r["binary_view_auroc"]), ci(r, "binary_run_balanced_accuracy"), f(r["binary_run_auroc"])]
        lines.append(f"| {' | '.join(cells)} |")
    return "\n".join(lines)


def _finished_metrics(a, s:dict, name:str) -> dict:
    "metrics.json of the run with settings `s`: trained now, or (with --from-runs) read from its finished folder."
    if not a.from_runs:
        from phi_cls.config import TrainConfig
        from phi_cls.train import run
        print(f"quality: {name}: phi-cls train with {s}", flush=True)
        run(TrainConfig(**s))
    run_dir = Path(s["output_dir"])
    if not (run_dir / "metrics.json").exists():
        raise SystemExit(f"quality: {run_dir} holds no finished run (no metrics.json); run without --from-runs.")
    return json.loads((run_dir / "metrics.json").read_text())


def main_types(a):
    "The --types table: a labels=types run and a binary run on the same rows."
    found, notes = {}, []
    for labels in ("types", "binary"):
        s = types_settings(a, labels)
        found[labels] = _finished_metrics(a, s, f"gsm8k-pairs, labels={labels}")
        notes.append(_note(Path(s["output_dir"]), f"gsm8k-pairs, labels={labels}", found[labels]))
    df = types_frame(found["types"], found["binary"])
    md, table = types_markdown(df), a.table or str(HERE / "quality_types")
    print(md)
    df.to_csv(f"{table}.csv", index=False)
    title = (f"# Three classes on gsm8k-pairs' test split (`make quality`; table built {time.strftime('%Y-%m-%d')}, "
             f"commit {_commit()}; {_machine()})")
    Path(f"{table}.md").write_text(f"{title}\n\n{md}\n\nRuns:\n" + "\n".join(notes) + "\n")
    print(f"quality: wrote {table}.md and {table}.csv")


def steps_settings(a, data:str) -> dict:
    "The TrainConfig fields of the --steps run on `data`."
    s = dict(COMMON, **STEPS[data], data=data, steps=True, probe_layer="last", model=a.model,
             output_dir=str(Path(a.out_dir) / "steps" / data), overwrite=True)
    for k in ("max_train_samples", "max_eval_samples", "max_length", "epochs"):
        if getattr(a, k) is not None: s[k] = getattr(a, k)
    return s


STEP_ORDER = ("always -1", "last step", "random step", "checker", "classifier", "hybrid")


def steps_rows(metrics:dict, data:str) -> list:
    "One row per signal of a --steps run: the baselines and the checker once, then each classifier and its hybrid."
    rows, modes = [], [mode for mode in NAMES if "steps" in metrics.get(mode, {})]
    for i, mode in enumerate(modes):
        for name in STEP_ORDER:
            m = metrics[mode]["steps"].get(name)
            if m is None or (i > 0 and name not in ("classifier", "hybrid")): continue
            rule = (metrics[mode].get("step_decision") or {}).get("rule")
            rule = f"; rule: {rule}" if rule else ""
            shown = {"classifier": NAMES[mode], "hybrid": f"hybrid ({NAMES[mode]}{rule})"}.get(name, name)
            rows.append(dict(data=data, signal=shown, **{k: m.get(k) for k in ("n_flawed", "n_correct", "acc_flawed",
                                                                               "acc_correct", "f1")},
                             **{f"{k}_{e}": ((m.get("intervals") or {}).get(k) or [None, None])[j]
                                for k in ("acc_flawed", "acc_correct", "f1") for j, e in enumerate(("low", "high"))}))
    return rows


def steps_markdown(df:pd.DataFrame) -> str:
    "The step table as markdown, each score with its 95% interval."
    ci = lambda r, k: ("-" if pd.isna(r[k]) else f"{r[k]:.3f} ({r[k + '_low']:.2f}-{r[k + '_high']:.2f})"
                       if pd.notna(r[k + "_low"]) else f"{r[k]:.3f}")
    lines = ["| data | signal | flawed rows: exact step (95% CI) | correct rows: -1 (95% CI) | F1 (95% CI) |",
             "|---|---|---|---|---|"]
    for _, r in df.iterrows():
        lines.append(f"| {r['data']} | {r['signal']} | {ci(r, 'acc_flawed')} | {ci(r, 'acc_correct')} | "
                     f"{ci(r, 'f1')} |")
    return "\n".join(lines)


def localisation_line(run_dir:Path, data:str) -> str:
    "Of the test rows the checker flags: how often its step is the first wrong one, later, or earlier."
    from phi_cls.steps import localisation
    found = sorted(run_dir.glob("*_steps.csv"))
    if not found: return f"- {data}: no steps file"
    df = pd.read_csv(found[0])
    if "checker_step" not in df: return f"- {data}: the checker did not run"
    loc = localisation(df["true_first_error_step"], df["checker_step"])
    return f"- {data}: {json.dumps(loc)}"


def main_steps(a):
    "The --steps table: step scores of every signal on both datasets, and the checker's localisation."
    rows, notes, located = [], [], []
    for data in a.data:
        s = steps_settings(a, data)
        metrics = _finished_metrics(a, s, f"{data}, steps")
        rows += steps_rows(metrics, data)
        notes.append(_note(Path(s["output_dir"]), data, metrics))
        located.append(localisation_line(Path(s["output_dir"]), data))
    df, table = pd.DataFrame(rows), a.table or str(HERE / "quality_steps")
    md = steps_markdown(df)
    print(md)
    df.to_csv(f"{table}.csv", index=False)
    title = (f"# The first wrong step on the test splits (`make quality`; table built {time.strftime('%Y-%m-%d')}, "
             f"commit {_commit()}; {_machine()})")
    Path(f"{table}.md").write_text(f"{title}\n\n{md}\n\nThe checker's localisation (test rows it flags):\n"
                                   + "\n".join(located) + "\n\nRuns:\n" + "\n".join(notes) + "\n")
    print(f"quality: wrote {table}.md and {table}.csv")


def main(argv=None):
    a = parse(argv)
    if a.types: return main_types(a)
    if a.steps: return main_steps(a)
    a.table = a.table or str(HERE / "quality")
    rows, notes = [], []
    for data in a.data:
        s = settings(a, data)
        metrics = _finished_metrics(a, s, data)
        rows += signal_rows(metrics, data)
        notes.append(_note(Path(s["output_dir"]), data, metrics))
    md = markdown(rows)
    print(md)
    Path(a.table).parent.mkdir(parents=True, exist_ok=True)
    frame(rows).to_csv(f"{a.table}.csv", index=False)
    when = time.strftime("%Y-%m-%d")
    title = f"# Quality on the fair test splits (`make quality`; table built {when}, commit {_commit()}; {_machine()})"
    Path(f"{a.table}.md").write_text(f"{title}\n\n{md}\n\nRuns:\n" + "\n".join(notes) + "\n")
    print(f"quality: wrote {a.table}.md and {a.table}.csv")


if __name__ == "__main__": sys.exit(main())
