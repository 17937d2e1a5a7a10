"""`phi-cls check --explain`: per-row counts of calculations checked and lines skipped, with a reason per skip; rows the checker cannot judge are 'not checked', never a crash."""
import pandas as pd

from conftest import phi_cls as cli, phi_cls_here as here


def test_check_explain(tmp_path):
    rows = ["2 + 2 = 4, done.", "We need 7 * 8.\n7 * 8 = 54", "Let x = 3.\nSo 17 mod 5 = 2.", "So 2^15000 = 5.", "1 " + "- " * 2000 + "1 = 2",
            "From 9:40 AM to 11:40 AM is 3 hours."]
    pd.DataFrame({"solution": rows}).to_csv(tmp_path / "s.csv", index=False)
    proc = cli("check", "--input", tmp_path / "s.csv", "--output", tmp_path / "c.csv", "--no-progress", "--explain")
    out = pd.read_csv(tmp_path / "c.csv", keep_default_na=False)
    assert list(out.columns)[-5:] == ["checker_status", "checker_reason", "n_checked", "n_skipped", "checker_explain"]
    assert out["checker_flawed"].tolist() == [0, 1, 0, 0, 0, 1]
    assert out["n_checked"].tolist() == [1, 1, 0, 0, 0, 1] and out["n_skipped"].tolist() == [0, 0, 2, 1, 1, 0]
    assert out["checker_status"].tolist() == ["checked", "checked", "not checked", "not checked", "not checked", "checked"]
    assert out.loc[2, "checker_reason"] == "no calculation the checker can read"
    assert "line 2: modular arithmetic" in out.loc[2, "checker_explain"] and "line 1: left of = is not plain arithmetic" in out.loc[2, "checker_explain"]
    assert out.loc[3, "checker_reason"] == "line 1: a power over 10000 bits"
    assert "nested deeper than 50" in out.loc[4, "checker_reason"]
    assert out.loc[5, "computed"] == "2 hours"
    assert "3 calculations checked, 4 lines skipped, 3 rows not checked" in proc.stdout


def test_check_without_explain_has_no_explain_column(tmp_path):
    pd.DataFrame({"solution": ["3 * 4 = 12"]}).to_csv(tmp_path / "s.csv", index=False)
    proc = here("check", "--input", tmp_path / "s.csv", "--output", tmp_path / "c.csv", "--no-progress")  # the real command: above
    assert proc.returncode == 0 and "checker_explain" not in pd.read_csv(tmp_path / "c.csv").columns and "calculations checked" not in proc.stdout
