"""The checker never raises a false alarm on a correct CHAMP solution (label 0: every reference solution and every model solution annotated correct)."""
from phi_cls.check import check_frame
from phi_cls.data import champ_rows


def test_no_false_alarm_on_any_correct_champ_solution():
    champ = champ_rows()
    correct = champ[champ["label"] == 0]
    assert len(correct) == 366 and (correct["source"] == "reference").sum() == 270  # the full set, not a sample
    res = check_frame(correct[["index", "solution"]])
    flagged = res[res["checker_flawed"] == 1]
    assert flagged.empty, flagged[["index", "error_text", "stated", "computed"]].to_string()
    assert (res["checker_status"] != "not checked").any() and res["n_checked"].sum() > 100  # it did read them


def test_still_catches_slips_in_flawed_champ_solutions():
    champ = champ_rows()
    assert check_frame(champ[champ["label"] == 1][["index", "solution"]])["checker_flawed"].sum() >= 20
