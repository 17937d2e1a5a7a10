"""Build phi_cls's embedded `gsm8k-pairs` data: minimal pairs (correct, flawed) from GSM8K's TRAIN split.

    python scripts/build_gsm8k_pairs.py --input train.jsonl --out phi_cls/embedded/gsm8k_pairs.jsonl.gz --seed 0 --problems 2000

GSM8K (openai/grade-school-math, MIT) writes each step's computation as a calculator annotation:
`48/2 = <<48/2=24>>24 clips`. We parse the annotations into steps, find which later numbers are earlier results,
and from each correct solution derive one flawed twin that differs from it as little as possible:

- computational: one stated result is wrong (off by a small amount, a digit slip, off by 10x); later steps that use
  it carry the wrong value forward, so only that one calculation fails to check out;
- conceptual: one operation or operand is wrong (+ for -, * for /, the wrong quantity, a skipped step) and everything
  after it is recomputed, so every stated calculation checks out and only the reasoning is wrong.

Annotations are stripped from the text the model reads. The output is deterministic for (input, seed, problems):
each problem's perturbation uses its own seeded generator, so `--problems N` is a prefix of a larger build.
The builder reads only the file passed as --input.
"""
from __future__ import annotations
import argparse, gzip, io, json, math, random, re
from fractions import Fraction
from pathlib import Path

ANN = re.compile(r"<<([^<>=]*)=([^<>]*)>>")
NUM = r"\d{1,3}(?:,\d{3})+(?:\.\d+)?|\d+(?:\.\d+)?|\.\d+"
NUM_AT = re.compile(rf"^(?:{NUM})")
NUMBER = re.compile(rf"(?<![\w.])(?:{NUM})(?![\w]|\.\d)")
TOKEN = re.compile(rf"(?P<num>{NUM})|(?P<op>[+\-*/×÷])|(?P<x>(?<![A-Za-z])x(?![A-Za-z]))|(?P<par>[()])|(?P<eq>=)|(?P<skip>\s+|\$)|(?P<other>.)")
EXPR = re.compile(r"(?P<num>\d+(?:\.\d+)?|\.\d+)|(?P<op>[+\-*/])|(?P<par>[()])|(?P<sp>\s+)|(?P<bad>.)")
SWAP = {"+": "-", "-": "+", "*": "/", "/": "*"}
COMPUTATIONAL, CONCEPTUAL = "computational", "conceptual"


class Skip(Exception):
    "This problem or candidate cannot be used."


# ---- numbers -------------------------------------------------------------------------------------------------------
def to_value(text:str) -> Fraction:
    "A number as written (`1,200`, `.5`, `3.25`) as an exact Fraction."
    return Fraction(text.replace(",", ""))

def decimals(v:Fraction) -> int | None:
    "Digits after the point that `v` needs, or None if its decimal expansion does not terminate."
    d, twos, fives = v.denominator, 0, 0
    while d % 2 == 0: d, twos = d // 2, twos + 1
    while d % 5 == 0: d, fives = d // 5, fives + 1
    return max(twos, fives) if d == 1 else None

def fmt_like(v:Fraction, like:str) -> str:
    "`v` written the way `like` is (commas, decimal places, a leading `.`); Skip if that needs odd decimals."
    need, have = decimals(v), len(like.split(".")[1]) if "." in like else 0
    if need is None or (need > have and (have == 0 or need > 2)): raise Skip("odd decimals")
    places = max(need, have)
    text = f"{float(v):,.{places}f}" if "," in like else f"{float(v):.{places}f}"
    return text[1:] if like.startswith(".") and text.startswith("0.") else text


# ---- expressions ---------------------------------------------------------------------------------------------------
def expr_tokens(expr:str) -> list:
    "An annotation's expression as tokens: ('num', Fraction) and ('op' | 'par', str)."
    out = []
    for m in EXPR.finditer(expr):
        if m.lastgroup == "bad": raise Skip(f"unsupported character {m.group()!r} in {expr!r}")
        if m.lastgroup == "num": out.append(("num", to_value(m.group())))
        elif m.lastgroup in ("op", "par"): out.append((m.lastgroup, m.group()))
    return out

def evaluate(tokens:list) -> Fraction:
    "Exact value of + - * / with parentheses and unary minus; Skip on anything else or a division by zero."
    pos = 0
    def peek(): return tokens[pos] if pos < len(tokens) else (None, None)
    def factor():
        nonlocal pos
        kind, val = peek()
        if kind == "num": pos += 1; return val
        if (kind, val) == ("op", "-"): pos += 1; return -factor()
        if (kind, val) == ("par", "("):
            pos += 1; v = expr()
            if peek() != ("par", ")"): raise Skip("unbalanced parentheses")
            pos += 1; return v
        raise Skip("bad expression")
    def term():
        nonlocal pos
        v = factor()
        while peek()[0] == "op" and peek()[1] in "*/":
            op = tokens[pos][1]; pos += 1; r = factor()
            if op == "/" and r == 0: raise Skip("division by zero")
            v = v * r if op == "*" else v / r
        return v
    def expr():
        nonlocal pos
        v = term()
        while peek()[0] == "op" and peek()[1] in "+-":
            op = tokens[pos][1]; pos += 1; r = term()
            v = v + r if op == "+" else v - r
        return v
    v = expr()
    if pos != len(tokens): raise Skip("trailing tokens")
    return v

def nums(tokens:list) -> list: return [v for k, v in tokens if k == "num"]
def ops(tokens:list) -> list: return [v for k, v in tokens if k == "op"]


# ---- parsing a solution --------------------------------------------------------------------------------------------
def visible_copy(before:str, expr:list) -> tuple | None:
    "Where the text just before an annotation restates its expression (`48/2 = `): (start, [(kind, start, end)]) or None."
    toks = [(m.lastgroup, m.start(), m.end()) for m in TOKEN.finditer(before)]
    i = len(toks)
    while i > 0 and toks[i - 1][0] != "other": i -= 1
    tail = toks[i:]
    sig = [t for t in tail if t[0] != "skip"]
    if not sig or sig[-1][0] != "eq": return None
    sig = sig[:-1]
    if any(t[0] == "eq" for t in sig): sig = sig[max(j for j, t in enumerate(sig) if t[0] == "eq") + 1:]
    want_n, want_o = nums(expr), ops(expr)
    for s in range(len(sig)):
        part = [t for t in sig[s:] if t[0] != "par"]
        n = [to_value(before[a:b]) for k, a, b in part if k == "num"]
        o = [{"x": "*", "×": "*", "÷": "/"}.get(before[a:b], before[a:b]) for k, a, b in part if k in ("op", "x")]
        if n == want_n and o == want_o and part and part[0][0] == "num" and len(part) == len(n) + len(o):
            return sig[s][1], [t for t in sig[s:] if t[0] in ("num", "op", "x")]
    return None

def parse_solution(answer:str) -> dict:
    "GSM8K's annotated answer as lines of pieces and a list of steps; Skip if it is irregular."
    *body, final = answer.split("\n")
    if not final.startswith("#### ") or not body: raise Skip("no final answer line")
    steps, lines = [], []
    for ln, raw in enumerate(body):
        pieces, at = [], 0
        for m in ANN.finditer(raw):
            expr = expr_tokens(m.group(1))
            value = evaluate(expr)
            stated = m.group(2).strip()
            if not re.fullmatch(NUM, stated) or to_value(stated) != value: raise Skip("annotation does not compute")
            shown = NUM_AT.match(raw[m.end():])
            if not shown or to_value(shown.group()) != value: raise Skip("visible result differs from annotation")
            before = raw[at:m.start()]
            copy = visible_copy(before, expr)
            if copy:
                start, toks = copy
                pieces += [("text", before[:start]), ("copy", len(steps), [(k, before[a:b]) for k, a, b in toks], before[start:])]
            else: pieces.append(("text", before))
            pieces.append(("result", len(steps), shown.group()))
            steps.append(dict(line=ln, expr=expr, value=value, copy=copy is not None,
                              stale=copy is None and re.search(r"=\s*\$?\s*$", before) is not None))
            at = m.end() + shown.end()
        pieces.append(("text", raw[at:]))
        lines.append(pieces)
    if not steps: raise Skip("no annotated step")
    lines.append([("text", "#### "), ("final", final[5:].strip())])
    if not re.fullmatch(NUM, final[5:].strip()): raise Skip("final answer is not a plain number")
    used = [s for pieces in lines for p in pieces if p[0] == "copy" for k, s in p[2] if k != "num" and s in "x×*"]
    return dict(lines=lines, steps=steps, times=max(sorted(set(used)), key=used.count) if used else "*")

def question_numbers(question:str) -> set: return {to_value(m.group()) for m in NUMBER.finditer(question)}

def references(steps:list, qnums:set) -> list:
    "For each step's number tokens: the index of the earlier step whose result it is (the latest), else None."
    refs = []
    for m, step in enumerate(steps):
        row = []
        for v in nums(step["expr"]):
            earlier = [j for j in range(m) if steps[j]["value"] == v]
            row.append(earlier[-1] if earlier else None)
        refs.append(row)
    return refs


# ---- rendering -----------------------------------------------------------------------------------------------------
def op_symbol(old:str, new:str, times:str) -> str:
    return old if {"x": "*", "×": "*", "÷": "/"}.get(old, old) == new else times if new == "*" else new

def render_copy(toks:list, text:str, expr:list, times:str) -> str:
    "The restated expression with its numbers and operators replaced by `expr`'s, keeping the original spacing and symbols."
    new_n, new_o, out, at, ni, oi = nums(expr), ops(expr), [], 0, 0, 0
    for kind, s in toks:
        j = text.index(s, at)
        out.append(text[at:j])
        if kind == "num": out.append(fmt_like(new_n[ni], s)); ni += 1
        else: out.append(op_symbol(s, new_o[oi], times)); oi += 1
        at = j + len(s)
    return "".join(out) + text[at:]

def render(parsed:dict, values:list, exprs:list, changed:dict) -> list:
    "The solution's lines without annotations, with new step values/expressions, old results in prose replaced after their step."
    steps, out, live = parsed["steps"], [], {}
    for pieces in parsed["lines"]:
        live.update({steps[p[1]]["value"]: values[p[1]] for p in pieces if p[0] == "result" and p[1] in changed})
        text = []
        for p in pieces:
            if p[0] == "text": text.append(replace_prose(p[1], live))
            elif p[0] == "copy": text.append(render_copy(p[2], p[3], exprs[p[1]], parsed["times"]) if exprs[p[1]] != steps[p[1]]["expr"] else p[3])
            elif p[0] == "result":
                j = p[1]
                text.append(fmt_like(values[j], p[2]) if values[j] != steps[j]["value"] else p[2])
            elif p[0] == "final": text.append(replace_prose(p[1], live))
        out.append("".join(text))
    return out

def replace_prose(text:str, live:dict) -> str:
    "Numbers in prose that are changed results, replaced by their new values; Skip if one is part of a fraction."
    def new(m):
        v = to_value(m.group())
        if v not in live: return m.group()
        if text[max(m.start() - 1, 0):m.start()] == "/" or text[m.end():m.end() + 1] == "/": raise Skip("a changed result inside a fraction")
        return fmt_like(live[v], m.group())
    return NUMBER.sub(new, text) if live else text

def _calc_tokens(toks:list) -> list:
    out = []
    for kind, s in toks:
        if out and ((kind == "num" or s == "(") and (out[-1][0] == "num" or out[-1][1] == ")")): out.append(("op", "*"))  # 28(1/3)
        out.append(("num", to_value(s)) if kind == "num" else ("op", {"x": "*", "×": "*", "÷": "/"}.get(s, s)) if kind in ("op", "x") else ("par", s))
    return out

def stated_calculations(text:str) -> list:
    "Every `a op b = c` the text states: (line (1-based), left side, stated c, computed value)."
    out = []
    for ln, line in enumerate(text.split("\n"), 1):
        toks = [(m.lastgroup, m.group()) for m in TOKEN.finditer(line)]
        for i, (kind, _) in enumerate(toks):
            if kind != "eq": continue
            j = next((j for j in range(i + 1, len(toks)) if toks[j][0] != "skip"), None)
            if j is None or toks[j][0] != "num" or (j + 1 < len(toks) and toks[j + 1][1] == "/"): continue
            a = i
            while a > 0 and toks[a - 1][0] in ("num", "op", "x", "par", "skip"): a -= 1
            lhs = [t for t in toks[a:i] if t[0] != "skip"]
            while lhs and lhs[0][0] != "num" and lhs[0][1] != "(": lhs.pop(0)
            if not any(t[0] in ("op", "x") for t in lhs): continue
            for start in (0, 1):
                try: value = evaluate(_calc_tokens(lhs[start:])); break
                except Skip: value = None
            if value is not None: out.append((ln, "".join(s for _, s in lhs), to_value(toks[j][1]), value))
    return out

def wrong_lines(text:str) -> list:
    "Lines (1-based) with a stated calculation that does not compute exactly."
    return [ln for ln, _, stated, value in stated_calculations(text) if stated != value]


# ---- perturbations -------------------------------------------------------------------------------------------------
def propagate(parsed:dict, refs:list, qnums:set, k:int, new_expr:list | None, forced:Fraction | None) -> tuple:
    "Step values and expressions after changing step `k` (its expression, or its stated result), later steps recomputed."
    steps = parsed["steps"]
    values, exprs = [s["value"] for s in steps], [list(s["expr"]) for s in steps]
    if new_expr is not None: exprs[k] = new_expr
    values[k] = forced if forced is not None else evaluate(exprs[k])
    changed = {k}
    for m in range(k + 1, len(steps)):
        toks, ni = [], 0
        for kind, v in exprs[m]:
            if kind == "num":
                j = refs[m][ni]; ni += 1
                if j in changed:
                    if v in qnums: raise Skip("ambiguous reference")
                    v = values[j]
            toks.append((kind, v))
        if toks != exprs[m]:
            if steps[m]["stale"]: raise Skip("a restated calculation we cannot rewrite")
            exprs[m], values[m] = toks, evaluate(toks)
            if values[m] != steps[m]["value"]: changed.add(m)
    return values, exprs, changed

def check_candidate(parsed:dict, qnums:set, values:list, changed:set) -> None:
    "Skip candidates that give themselves away or make no difference."
    steps = parsed["steps"]
    olds = {}
    for j in changed:
        old, new = steps[j]["value"], values[j]
        if new <= 0: raise Skip("not positive")
        if old.denominator == 1 and new.denominator != 1: raise Skip("non-integer where the original was integral")
        if old in olds and olds[old] != new: raise Skip("two changed results share an old value")
        olds[old] = new
        others = [s["value"] for i, s in enumerate(steps) if i not in changed]
        if old in qnums or old in others:
            raise Skip("changed result also names another quantity")

def final_answer(lines:list) -> str: return lines[-1][5:]

def computational_values(v:Fraction, rng:random.Random) -> list:
    "Plausible wrong values for an integer result, keeping its roundness: (kind, value)."
    n = int(v); s = str(n); zeros = len(s) - len(s.rstrip("0")); core = s[:len(s) - zeros]
    unit = 10 ** (zeros - 1 if len(core) == 1 and zeros >= 2 else zeros)
    out = [("off_by_small", n + d * unit) for d in (1, -1, 2, -2)]
    out += [("digit_slip", int(core[:i] + core[i + 1] + core[i] + core[i + 2:] + "0" * zeros)) for i in range(len(core) - 1)
            if core[i] != core[i + 1] and not (i == 0 and core[1] == "0")]
    out += [("off_by_10x", n * 10)] + ([("off_by_10x", n // 10)] if zeros else [])
    rng.shuffle(out)
    return [(k, Fraction(w)) for k, w in out if w > 0 and w != n]

def conceptual_edits(parsed:dict, refs:list, qnums:set, k:int, rng:random.Random) -> list:
    "Changed expressions for step k: (kind, tokens) with one operator swapped or one operand replaced."
    steps, expr, out = parsed["steps"], parsed["steps"][k]["expr"], []
    for i, (kind, v) in enumerate(expr):
        if kind == "op" and not (i == 0 or expr[i - 1] in (("par", "("), ("op", "+"), ("op", "-"), ("op", "*"), ("op", "/"))):
            out.append(("wrong_operation", expr[:i] + [("op", SWAP[v])] + expr[i + 1:]))
    num_idx = [i for i, (kind, _) in enumerate(expr) if kind == "num"]
    for ni, i in enumerate(num_idx):
        v, j = expr[i][1], refs[k][ni]
        skipped = {w for w in nums(steps[j]["expr"]) if w != v} if j is not None else set()
        pool = sorted((qnums | {s["value"] for s in steps[:k]}) - {v} - set(nums(expr)))
        out += [("skipped_step" if w in skipped else "wrong_quantity", expr[:i] + [("num", w)] + expr[i + 1:]) for w in pool]
    rng.shuffle(out)
    kinds = sorted({k for k, _ in out}); rng.shuffle(kinds)
    return sorted(out, key=lambda e: kinds.index(e[0]))  # a random kind first, then its edits in random order

def number_counts(records:list) -> dict:
    "How often each number is written in the solutions (annotations stripped): how ordinary a value looks."
    counts = {}
    for r in records:
        for m in NUMBER.finditer(ANN.sub("", r["answer"])): counts[to_value(m.group())] = counts.get(to_value(m.group()), 0) + 1
    return counts

def oddity(changes:list, counts:dict) -> float:
    "How much less ordinary the new numbers are than the old ones: what a bag-of-words model could pick up."
    return sum(abs(math.log1p(counts.get(new, 0)) - math.log1p(counts.get(old, 0))) for old, new in changes)

def perturb(parsed:dict, question:str, error_type:str, rng:random.Random, counts:dict | None=None, tries:int=8) -> dict:
    "One flawed version of a parsed solution (solution, changed line (1-based), kind), the most ordinary-looking of `tries` valid ones."
    steps, qnums, counts = parsed["steps"], question_numbers(question), counts or {}
    refs, original = references(steps, qnums), render(parsed, [s["value"] for s in steps], [s["expr"] for s in steps], set())
    ks = [k for k, s in enumerate(steps) if s["copy"]]
    rng.shuffle(ks)
    found = []
    for k in ks:
        if error_type == COMPUTATIONAL:
            if steps[k]["value"].denominator != 1: continue
            cands = [(kind, None, w) for kind, w in computational_values(steps[k]["value"], rng)]
        else: cands = [(kind, e, None) for kind, e in conceptual_edits(parsed, refs, qnums, k, rng)]
        for kind, new_expr, forced in cands:
            try:
                values, exprs, changed = propagate(parsed, refs, qnums, k, new_expr, forced)
                check_candidate(parsed, qnums, values, changed)
                lines = render(parsed, values, exprs, changed)
            except Skip: continue
            if final_answer(lines) == final_answer(original): continue
            if wrong_lines("\n".join(lines)) != ([steps[k]["line"] + 1] if error_type == COMPUTATIONAL else []): continue
            score = oddity([(steps[j]["value"], values[j]) for j in changed], counts)
            found.append((score, len(found), dict(solution="\n".join(lines), changed_line=steps[k]["line"] + 1, error_detail=kind)))
            if len(found) >= tries: return min(found)[2]
    if found: return min(found)[2]
    raise Skip(f"no {error_type} perturbation")


# ---- the data set --------------------------------------------------------------------------------------------------
def split_of(position:int, n:int, fractions=(0.7, 0.1, 0.2)) -> str:
    n_train, n_val = round(fractions[0] * n), round(fractions[1] * n)
    return "train" if position < n_train else "validation" if position < n_train + n_val else "test"

def problem_rows(line_no:int, record:dict, preferred:str, seed:int, counts:dict | None=None) -> list:
    "The correct row and one flawed row (the preferred error type, else the other) for one GSM8K problem; Skip if none."
    rng = random.Random(f"{seed}-{line_no}")
    parsed = parse_solution(record["answer"])
    steps = parsed["steps"]
    correct = "\n".join(render(parsed, [s["value"] for s in steps], [s["expr"] for s in steps], set()))
    if wrong_lines(correct): raise Skip("the reference solution states a calculation that does not compute")
    for error_type in (preferred, CONCEPTUAL if preferred == COMPUTATIONAL else COMPUTATIONAL):
        try: flawed = perturb(parsed, record["question"], error_type, rng, counts)
        except Skip: continue
        common = dict(problem_id=f"gsm8k-train-{line_no:05d}", question=record["question"])
        rows = [dict(common, solution=correct, label=0, error_type="none", error_detail=None, changed_line=None),
                dict(common, solution=flawed["solution"], label=1, error_type=error_type, error_detail=flawed["error_detail"],
                     changed_line=flawed["changed_line"])]
        return rows if rng.random() < 0.5 else rows[::-1]
    raise Skip("no perturbation")

def build(records:list, seed:int=0, problems:int | None=2000) -> list:
    "Rows for the first `problems` usable problems in a seeded order, one correct and one flawed each, split by problem."
    order = list(range(len(records)))
    random.Random(seed).shuffle(order)
    chosen, counts = [], number_counts(records)
    for line_no in order:
        if problems is not None and len(chosen) >= problems: break
        preferred = (COMPUTATIONAL, CONCEPTUAL)[len(chosen) % 2]
        try: chosen.append(problem_rows(line_no, records[line_no], preferred, seed, counts))
        except Skip: continue
    rows = []
    for pos, pair in enumerate(chosen):
        for r in pair: rows.append(dict(index=len(rows), **r, split=split_of(pos, len(chosen))))
    return rows

def read_records(path:Path) -> list:
    records = []
    for i, line in enumerate(Path(path).read_text(encoding="utf-8").splitlines()):
        if not line.strip(): continue
        try: r = json.loads(line)
        except json.JSONDecodeError as e: raise SystemExit(f"{path}, line {i + 1}: not JSON ({e.msg}). Pass GSM8K's train.jsonl.")
        if not {"question", "answer"} <= set(r): raise SystemExit(f"{path}, line {i + 1}: needs 'question' and 'answer' keys, found {sorted(r)}.")
        records.append(r)
    return records

def write_rows(rows:list, out:Path) -> None:
    "JSON lines, gzip with a fixed mtime and no file name, so the same rows give the same bytes."
    out.parent.mkdir(parents=True, exist_ok=True)
    data = "".join(json.dumps(r, ensure_ascii=False, sort_keys=False) + "\n" for r in rows).encode("utf-8")
    buf = io.BytesIO()
    with gzip.GzipFile(filename="", mode="wb", fileobj=buf, mtime=0, compresslevel=9) as f: f.write(data)
    tmp = out.with_name(out.name + ".tmp")
    tmp.write_bytes(buf.getvalue()); tmp.replace(out)

def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--input", required=True, type=Path, help="GSM8K train.jsonl (never the test split)")
    p.add_argument("--out", required=True, type=Path, help="output .jsonl.gz")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--problems", type=int, default=2000, help="number of problems (each gives one correct and one flawed row)")
    a = p.parse_args(argv)
    if "test" in a.input.name: raise SystemExit(f"--input {a.input}: this looks like GSM8K's test split; build only from train.jsonl.")
    if a.problems < 1: raise SystemExit(f"--problems {a.problems}: needs at least 1.")
    rows = build(read_records(a.input), a.seed, a.problems)
    write_rows(rows, a.out)
    print(f"{a.out}: {len(rows)} rows from {len(rows) // 2} problems")

if __name__ == "__main__": main()
