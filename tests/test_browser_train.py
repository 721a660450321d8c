"""The Train tab in a real browser (headless Chromium, selenium) on the tiny family: start a real `trainers.lora` run
from the tab, watch its curve grow, stop it, resume it to the end, serve it in the LoRA slot, and see Compare answer
from the new revision. Skipped only when chromium or chromedriver is not installed (CI installs both)."""

from __future__ import annotations


import pytest

from tests import ui_fixtures as uf
from tests.browser_kit import AVAILABLE, MISSING, chrome, css, open_app, open_tab, screenshot, type_into, wait

pytestmark = pytest.mark.skipif(not AVAILABLE, reason=MISSING)


def state(driver) -> tuple[str, int]:
    found = css(driver, "#train-state")
    if not found:
        return "", -1
    step = found[0].get_attribute("data-step") or ""
    return found[0].get_attribute("data-state") or "", int(step) if step.isdigit() else -1


def curve_points(driver) -> int:
    """Points of the loss line drawn in the curve (the vertices of Plotly's first line path)."""
    count = driver.execute_script(
        "const line = document.querySelector('#train-curve path.js-line');"
        "const d = line ? (line.getAttribute('d') || '') : '';"
        "return d ? d.split(/[ML]/).filter(Boolean).length : 0;")
    return int(count or 0)


def command(driver) -> str:
    return driver.find_element("css selector", "#train-command").text


def click(driver, selector) -> None:
    [button] = css(driver, selector)
    driver.execute_script("arguments[0].scrollIntoView({block: 'center'});", button)
    button.click()


def test_start_watch_stop_resume_and_serve_from_the_train_tab(tmp_path, tiny_tokenizer, tiny_model_dir, monkeypatch):
    from workbench import paths, results
    from workbench.jobs import TrainingJobs
    from workbench.store import LocalStore

    wb = uf.Workbench(tmp_path / "wb", tiny_tokenizer, tiny_model_dir, monkeypatch)
    monkeypatch.setenv("OMP_NUM_THREADS", "1")  # a tiny model on a shared CPU: threads only contend
    jobs = TrainingJobs(tmp_path / "runs", poll_s=0.2)
    driver = chrome(tmp_path / "profile")
    try:
        with uf.launched(wb.service, jobs=jobs) as (_, url):
            open_app(driver, url)
            open_tab(driver, "Train")
            wait(driver, lambda d: css(d, "#train-steps input"), message="the Train tab did not render")
            type_into(driver, "#train-steps input", "1500")
            wait(driver, lambda d: "--max-steps 1500" in command(d), message="the command did not follow the steps")
            [output] = css(driver, "#train-output input, #train-output textarea")
            output.click()
            output.send_keys("test/browser-lora")  # typed key by key, as a user would
            wait(driver, lambda d: "--output test/browser-lora" in command(d), message="the command did not follow "
                 "the output name")
            click(driver, "#train-start")
            wait(driver, lambda d: state(d)[0] == "running" and curve_points(d) >= 2, 120,
                 message="no curve point after Start")
            first = curve_points(driver)
            wait(driver, lambda d: curve_points(d) > first, 60, message="the curve did not grow")
            screenshot(driver, "train-browser-running")
            click(driver, "#train-stop")
            wait(driver, lambda d: state(d)[0] == "stopped", 60, message="Stop did not stop the run")
            stopped_at = state(driver)[1]
            assert 0 < stopped_at < 1500
            assert not LocalStore().exists("test/browser-lora")  # a stopped run is not published
            click(driver, "#train-resume")
            wait(driver, lambda d: state(d)[0] == "done", 240, message="the resumed run did not finish")
            assert state(driver)[1] == 1500
            revision = LocalStore().head("test/browser-lora")
            [record] = [r for r in map(results.read, paths.RESULTS_DIR.glob("lora-*.json"))
                        if r["model_id"] == "test/browser-lora"]
            assert record["training"]["resumed_from"] == f"checkpoint-{stopped_at}"  # resumed, not restarted
            screenshot(driver, "train-browser-done")
            click(driver, "#train-serve")  # the default slot is lora
            wait(driver, lambda d: "test/browser-lora" in d.find_element("css selector", "#train-notice").text, 60,
                 message="serving did not report the new model")
            open_tab(driver, "Compare")
            type_into(driver, "#compare-dialogue textarea", uf.DIALOGUES_EXTRA[0])
            click(driver, "#compare-run")
            wait(driver, lambda d: "test/browser-lora" in d.find_element("css selector", "#card-lora").text
                 and revision[:8] in d.find_element("css selector", "#card-lora").text, 120,
                 message="Compare did not answer from the new revision")
    finally:
        driver.quit()
        jobs.close()
