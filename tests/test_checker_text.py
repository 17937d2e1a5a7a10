"""The arithmetic checker on text: `phi-cls check` and `--explain` (per-row counts of calculations checked and lines
skipped, with a reason per skip), and fuzzing: random and adversarial text never makes it raise, and every row comes
back judged or 'not checked' with a reason. Its bad input files are in test_data.py's matrix."""
import random

import pandas as pd

from conftest import WRONG, phi_cls as cli, phi_cls_here as here
from phi_cls.check import LIMITS, Finding, arithmetic_value, check_frame, check_solution, normalize


# phi-cls check

def test_check_command(tmp_path):
    pd.DataFrame({"solution": ["2 + 2 = 4, done.", WRONG, "Let x = 3. Then 2x + 1 = 7."]}).to_csv(tmp_path / "s.csv",
                                                                                                   index=False)
    proc = cli("check", "--input", tmp_path / "s.csv", "--output", tmp_path / "c.csv", "--no-progress")
    out = pd.read_csv(tmp_path / "c.csv", keep_default_na=False)
    assert list(out.columns) == ["index", "checker_flawed", "error_line", "error_text", "stated", "computed",
                                 "checker_status", "checker_reason", "n_checked", "n_skipped"]
    assert out["checker_flawed"].tolist() == [0, 1, 0]
    assert out["checker_status"].tolist() == ["checked", "checked", "not checked"]
    assert out["n_skipped"].tolist() == [0, 0, 1]
    assert out.loc[0, ["error_line", "error_text", "stated", "computed"]].tolist() == ["", "", "", ""]
    assert out.loc[1, "error_text"] == "7 * 8 = 54" and "flagged 1" in proc.stdout


def test_check_explain(tmp_path):
    rows = ["2 + 2 = 4, done.", "We need 7 * 8.\n7 * 8 = 54", "Let x = 3.\nSo 17 mod 5 = 2.", "So 2^15000 = 5.",
            "1 " + "- " * 2000 + "1 = 2", "From 9:40 AM to 11:40 AM is 3 hours."]
    pd.DataFrame({"solution": rows}).to_csv(tmp_path / "s.csv", index=False)
    proc = cli("check", "--input", tmp_path / "s.csv", "--output", tmp_path / "c.csv", "--no-progress", "--explain")
    out = pd.read_csv(tmp_path / "c.csv", keep_default_na=False)
    assert list(out.columns)[-5:] == ["checker_status", "checker_reason", "n_checked", "n_skipped", "checker_explain"]
    assert out["checker_flawed"].tolist() == [0, 1, 0, 0, 0, 1]
    assert out["n_checked"].tolist() == [1, 1, 0, 0, 0, 1] and out["n_skipped"].tolist() == [0, 0, 2, 1, 1, 0]
    assert out["checker_status"].tolist() == ["checked", "checked", "not checked", "not checked", "not checked",
                                              "checked"]
    assert out.loc[2, "checker_reason"] == "no calculation the checker can read"
    assert "line 2: modular arithmetic" in out.loc[2, "checker_explain"]
    assert "line 1: left of = is not plain arithmetic" in out.loc[2, "checker_explain"]
    assert out.loc[3, "checker_reason"] == "line 1: a power over 10000 bits"
    assert "nested deeper than 50" in out.loc[4, "checker_reason"]
    assert out.loc[5, "computed"] == "2 hours"
    assert "3 calculations checked, 4 lines skipped, 3 rows not checked" in proc.stdout


def test_check_without_explain_has_no_explain_column(tmp_path):
    pd.DataFrame({"solution": ["3 * 4 = 12"]}).to_csv(tmp_path / "s.csv", index=False)
    proc = here("check", "--input", tmp_path / "s.csv", "--output", tmp_path / "c.csv", "--no-progress")  # real: above
    assert proc.returncode == 0 and "checker_explain" not in pd.read_csv(tmp_path / "c.csv").columns
    assert "calculations checked" not in proc.stdout


# fuzzing

PIECES = ["0", "1", "2", "7", "9", "10", "12", "007", "3.5", ".5", "1,234", "1,5", "99999999999", "2^", "^", "**",
          "//", "%", "!", "+", "-", "*", "/", "x", "×", "·", "÷", "−", "=", "≈", "==", "<", "≤", "≠", "(", ")", "[",
          "]", "{", "}", "$", "\\$", "\\%", "\\frac{", "\\dfrac", "\\sqrt{", "\\times", "\\cdot", "\\left(",
          "\\right)", "\\boxed{", "\\text{", "\\\\", "&", "^{", "_", "…", "...", " ", "  ", "\n", "\t", ".", ",", ":",
          ";", "?", "'", '"', "a", "x", "n", "So", "the", "and", "of", "per", "sets", "hours", "hour", "minutes", "AM",
          "PM", "9:40", "12:18", "from", "to", "is", "mod", "\\pmod", "≡", "ratio", "simplifies to", "about",
          "rounded", "nearest hundred", "percent", "increase", "decrease", "by", "discounted", "$50", "2019", "²", "³",
          "°", "√", "e", "E", "\\pi", "\\overline{3}", "<<", ">>", "✓", "\x00", "\u202e"]


def random_text(r: random.Random) -> str:
    return "".join(r.choice(PIECES) for _ in range(r.randint(0, 60)))


def adversarial(r: random.Random) -> list:
    n = r.randint(1, 9)
    return ["So 2^15000 = 5.", "2^2^2^2^2^2 = 4", "(2^9999)^(2^9999) = 1", "1000! * 1000! = 1", "99999! = 1",
            "10^(10^10) = 1", "1 " + "- " * 2000 + "1 = 2", "1 " + "-" * 2000 + "1 = 2", "-" * 5000 + "1 = 1",
            "(" * 3000 + "1" + ")" * 3000 + " = 2", "((" * 1000 + "1 + 1" + "))" * 1000 + " = 3",
            "(" * 60 + "1+1" + ")" * 60 + " = 2", "{" * 2000 + "1" + "}" * 2000 + " = 1",
            "\\frac{" * 500 + "1" + "}{2}" * 500 + " = 1", "9" * 100_000 + " = 1", "1 + " + "9" * 5000 + " = 1",
            "0." + "3" * 5000 + " * 3 = 1", "= 1\n" * 20_000, ("3 + 4 = 7 " * 2000 + "\n") * 30, "1/" * 3000 + "1 = 1",
            "2^" * 3000 + "2 = 4", "!" * 3000 + " = 1", "5" + "!" * 50 + " = 1", "%" * 3000, "1 % " * 3000 + "1 = 0",
            "1//" * 3000 + "1 = 1", ":".join(["12"] * 3000) + " simplifies to 1:1",
            "from " + "9:40 AM to " * 1000 + "11:40 AM is 2 hours", "2 hours " * 3000 + "= 1 minutes",
            "$" * 10_000 + "1 = 1", f"{n}" * (LIMITS.digits + 1) + f" + 1 = {n}", "1e" + "9" * 400 + " = 1",
            "\\sqrt{" * 1000 + "4" + "}" * 1000 + " = 2"]


def check_one(text: str):
    ex = check_solution(text, explain=True)
    assert ex.status in ("checked", "not checked")
    assert all(isinstance(f, Finding) for f in ex.findings) and check_solution(text) == ex.findings
    assert (ex.status == "not checked") == bool(ex.reason)
    assert all(isinstance(r, str) and r for _, r in ex.skipped + ex.limits)
    assert len(ex.checked) + len(ex.skipped) <= 2 * (text.count("\n") + 1) * (len(text) + 1)
    return ex


def test_fuzz_random_text_never_raises():
    r = random.Random(17)
    texts = [random_text(r) for _ in range(3000)]
    for t in texts:
        check_one(t)
        arithmetic_value(t[:200]); normalize(t[:200])
    out = check_frame(pd.DataFrame({"solution": texts}), explain=True)
    assert len(out) == len(texts) and set(out["checker_status"]) <= {"checked", "not checked"}


def test_fuzz_adversarial_text_is_not_checked_with_a_reason():
    r = random.Random(13)
    bombs = adversarial(r)
    for b in bombs:
        ex = check_one(b)
        assert not ex.findings or ex.status == "checked"
        value = arithmetic_value(b[:LIMITS.line_chars])
        assert value is None or isinstance(value, object)
    for b in ("So 2^15000 = 5.", "1 " + "- " * 2000 + "1 = 2", "9" * 100_000 + " = 1",
              "(" * 3000 + "1 + 1" + ")" * 3000 + " = 3"):
        ex = check_solution(b, explain=True)
        assert ex.status == "not checked" and ex.limits, (b[:40], ex)
    mixed = [random_text(r) + r.choice(bombs) + random_text(r) for _ in range(200)]
    out = check_frame(pd.DataFrame({"solution": mixed}), explain=True)
    assert (out["checker_reason"].str.len() > 0).sum() >= (out["checker_status"] == "not checked").sum()


def test_a_limit_in_one_line_does_not_stop_the_others():
    deep = "(" * 3000 + "1" + ")" * 3000
    ex = check_solution("So 2^15000 = 5.\nThen 7 * 8 = 54.\n" + deep + " + 1 = 2\nAlso 3 + 4 = 8.", explain=True)
    assert [f.computed for f in ex.findings] == ["56", "7"] and ex.status == "checked" and len(ex.limits) == 2
