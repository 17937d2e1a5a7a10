"""The web demo: in a real browser (headless Chromium, Debian's, no browser download, driven by Playwright), and its
batch tab's temporary files."""
import os, shutil, socket, subprocess, sys, time, urllib.request
from pathlib import Path

import pandas as pd
import pytest

from conftest import REPO, WRONG
from phi_cls.steps import StepDecision, combine_steps, first_error_from_probs

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync", "--disable-dev-shm-usage"]
QUESTION = "A box holds 7 rows of 8 eggs and 2 loose eggs. How many eggs are there?"
SOLUTION = "There are 7 rows of 8 eggs.\n7 * 8 = 54\nAdding the loose eggs: 54 + 2 = 56.\nThe answer is 56."
# for the step head trained on planted rows: its marker ' not' ends step 2; the checker finds the slip in step 3
STEP_QUESTION, STEP_SOLUTION = "Problem 7: add up 3, 4, 5.", "0 + 3 = 3.\n3 + 4 = 7 not\n7 + 5 = 13."

NO_CHROMIUM = pytest.mark.skipif(not Path(CHROMIUM).exists(),
                                 reason="needs Debian's chromium (make test and .ci/run install it)")


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def server(tiny_run, tmp_path_factory):
    port, log = _free_port(), tmp_path_factory.mktemp("serve") / "server.log"
    env = dict(os.environ, GRADIO_ANALYTICS_ENABLED="False", NO_PROXY="127.0.0.1,localhost",
               no_proxy="127.0.0.1,localhost")
    proc = subprocess.Popen([sys.executable, "-m", "phi_cls.cli", "serve", "--model", str(tiny_run / "lora"), "--port",
                             str(port), "--checker", "--max-upload-mb", "1"], cwd=REPO, env=env, stdout=open(log, "w"),
                            stderr=subprocess.STDOUT)
    url, deadline = f"http://127.0.0.1:{port}/", time.time() + 120
    while time.time() < deadline:
        if proc.poll() is not None: raise AssertionError(f"server exited:\n{log.read_text()[-3000:]}")
        try:
            urllib.request.urlopen(url, timeout=2); break
        except OSError: time.sleep(0.5)
    else: raise AssertionError(f"server did not answer in time:\n{log.read_text()[-3000:]}")
    yield url
    proc.terminate(); proc.wait(timeout=30)


@pytest.fixture(scope="module")
def browser():
    from playwright.sync_api import sync_playwright
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=FLAGS)
        yield browser
        browser.close()


@pytest.fixture
def page(browser, server):
    page = browser.new_page(viewport={"width": 1280, "height": 1000})
    page.goto(server, wait_until="networkidle")
    yield page
    page.close()


@NO_CHROMIUM
def test_single_solution_with_wrong_calculation(page, tmp_path):
    page.locator("#question textarea").fill(QUESTION)
    page.locator("#solution textarea").fill(SOLUTION)
    page.locator("#classify").click()
    verdict = page.locator("#verdict")
    verdict.get_by_text("Flawed").wait_for(timeout=60_000)
    text = verdict.inner_text()
    assert "checker" in text and "7 * 8 = 54" in text and "56" in text
    view = page.locator("#solution-view")
    shown = view.inner_text().lower()  # the label is styled in capitals
    assert "7 * 8 = 54 wrong: 54 (computes to 56)" in shown and "the answer is 56." in shown
    assert "flawed" in page.locator("#p-flawed").inner_text().lower()
    page.screenshot(path=str(tmp_path / "single.png"), full_page=True)
    assert (tmp_path / "single.png").stat().st_size > 10_000


@NO_CHROMIUM
def test_empty_fields_answered_in_page(page):
    page.locator("#question textarea").fill("")
    page.locator("#solution textarea").fill("")
    page.locator("#classify").click()
    page.locator("#verdict").get_by_text("Enter the problem and the solution first.").wait_for(timeout=30_000)


@NO_CHROMIUM
def test_batch_upload_and_download(page, tmp_path):
    data = tmp_path / "batch.csv"
    pd.DataFrame({"question": [QUESTION, QUESTION], "solution": [SOLUTION, "7 * 8 = 56 and 56 + 2 = 58."],
                  "label": [1, 0]}).to_csv(data, index=False)
    page.get_by_role("tab", name="Batch").click()
    page.locator("#batch-file input[type=file]").set_input_files(str(data))
    page.wait_for_timeout(1000)
    page.locator("#score").click()
    page.locator("#batch-summary").get_by_text("Scored").wait_for(timeout=60_000)
    summary = page.locator("#batch-summary").inner_text()
    assert "Scored 2 rows" in summary and "hybrid: accuracy" in summary
    link = page.locator("#batch-result a").first
    link.wait_for(timeout=30_000)
    body = page.request.get(link.get_attribute("href")).text()
    lines = body.strip().splitlines()
    assert lines[0].startswith("index,p(class=0),p(class=1),label,true_label,decided_by") and len(lines) == 3
    assert "checker" in lines[1] and "7 * 8 = 54" in lines[1]
    assert "predicted flawed" in page.locator("#confusion").inner_text()
    page.screenshot(path=str(tmp_path / "batch.png"), full_page=True)


@NO_CHROMIUM
def test_bad_file_answered_in_page(page, tmp_path):
    bad = tmp_path / "bad.csv"
    pd.DataFrame({"text": ["no question here"]}).to_csv(bad, index=False)
    page.get_by_role("tab", name="Batch").click()
    page.locator("#batch-file input[type=file]").set_input_files(str(bad))
    page.wait_for_timeout(1000)
    page.locator("#score").click()
    page.locator("#batch-summary").get_by_text("Cannot score this file").wait_for(timeout=60_000)
    assert "no column 'question'" in page.locator("#batch-summary").inner_text()


def test_batch_scorer_cleans_up(tiny_run, tmp_path, monkeypatch):
    "The batch tab leaves no temporary folders: only the latest result, until Gradio has copied it."
    import tempfile
    from phi_cls.predict import load_classifier
    from phi_cls.serve import BatchScorer
    clf = load_classifier(tiny_run / "probe")
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path / "tmp")); (tmp_path / "tmp").mkdir()
    pd.DataFrame({"index": [1, 2, 3], "question": ["What is 7 times 8?", "What is 2 + 2?", "What is 3 * 3?"],
                  "solution": [WRONG, "2 + 2 = 4", "3 * 3 = 9"], "label": [1, 0, 0]}).to_csv(tmp_path / "in.csv",
                                                                                             index=False)
    pd.DataFrame({"text": ["x"]}).to_csv(tmp_path / "bad.csv", index=False)
    scorer, results = BatchScorer(clf), []
    for _ in range(3):
        results.append(scorer(tmp_path / "in.csv"))
        assert len(list((tmp_path / "tmp").glob("phi_cls-*"))) == 1  # the latest result, until Gradio has copied it
    assert Path(results[-1]["output"]).exists() and not Path(results[0]["output"]).exists()
    assert "no column 'question'" in scorer(tmp_path / "bad.csv")["error"]
    assert not list((tmp_path / "tmp").iterdir())  # a failed request leaves nothing, and the previous result is gone
    scorer(tmp_path / "in.csv"); scorer.cleanup()
    assert not list((tmp_path / "tmp").iterdir())


@pytest.fixture(scope="module")
def step_app(steps_probe):
    "The app, in this process, on a tiny probe with a step head (trained on planted rows); and that classifier."
    from phi_cls.predict import load_classifier
    from phi_cls.serve import build_app
    clf, port = load_classifier(steps_probe[0]), _free_port()
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("NO_PROXY", "127.0.0.1,localhost"); mp.setenv("no_proxy", "127.0.0.1,localhost")
        app = build_app(clf, checker=True)
        app.launch(server_name="127.0.0.1", server_port=port, prevent_thread_lock=True, quiet=True)
        yield f"http://127.0.0.1:{port}/", clf
        app.close()


@NO_CHROMIUM
def test_steps_marked_in_page(browser, step_app, tmp_path):
    url, clf = step_app
    # what the step head says (its p from the classifier itself, its step at the fitted threshold) and the checker
    p = clf.step_probs([STEP_QUESTION], [STEP_SOLUTION])[0]
    decision = StepDecision.from_dict(clf.info["steps"]["decision"])
    head, checker = first_error_from_probs(p, decision.threshold), 2  # the checker: "7 + 5 = 13." (step 3)
    assert head == 1, p  # the planted marker (step 2): the step head learned it
    hybrid = int(combine_steps(decision.rule, [head], [checker])[0])
    page = browser.new_page(viewport={"width": 1280, "height": 1000})
    page.goto(url, wait_until="networkidle")
    page.locator("#question textarea").fill(STEP_QUESTION)
    page.locator("#solution textarea").fill(STEP_SOLUTION)
    page.locator("#classify").click()
    verdict = page.locator("#verdict")
    verdict.get_by_text("First wrong step").wait_for(timeout=60_000)
    # the hybrid's step, then the step head's and the checker's, counted from 1 as people do
    assert (f"First wrong step: step {hybrid + 1} of 3 (step head: step 2 of 3, p = {p[head]:.3f}; arithmetic checker: "
            "step 3 of 3)") in verdict.inner_text()
    said = {i: [] for i in range(3)}
    said[hybrid].append("first wrong step")
    said[head].append(f"step head (p {p[head]:.2f})")
    said[checker].append("checker: wrong calculation")
    shown = page.locator("#steps-view").inner_text().lower()  # the labels are styled in capitals
    for i, text in enumerate(STEP_SOLUTION.split("\n")):
        assert f"{text} {'; '.join(said[i])}".strip() in shown, (i, shown)
    assert "0 + 3 = 3.\n3 + 4" in shown  # the first step: no label
    page.screenshot(path=str(tmp_path / "steps.png"), full_page=True)
    page.close()
