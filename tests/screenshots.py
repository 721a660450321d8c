"""Screenshots of the real app on the committed demo family, as a user meets it (not part of the test run).

    python -m tests.screenshots     # -> artifacts/screenshots/demo-*.png

Launches `python -m workbench` (what `make run` serves) and drives every tab in headless Chromium with a heated
dialogue from the demo test split. Each `demo-<tab>.png` is the 1400x1000 window as a user first sees it (no
scrolling); `demo-<tab>-page.png` is the whole page at the same width; `demo-compare-slots.png` shows the slot
chooser with a fifth slot ticked. Prints the start-up time and the Compare latency seen in the browser. No vote is
saved (the Preferences tab only reads). WORKBENCH_RESULTS=DIR shows the Dashboard of another results folder.
"""

from __future__ import annotations

import sys
import tempfile
import time
from pathlib import Path

from benchmarks.load import launched_app
from tests.browser_kit import SHOTS, chrome, css, open_app, open_tab, screenshot, type_into, wait
from workbench import data
from workbench.corpus import HEATED
from workbench.modelset import DEFAULT_CONFIG, SLOTS

WINDOW = (1400, 1000)


def set_viewport(driver) -> None:
    """A 1400x1000 page area (the window's frame, even headless, takes some of the window size)."""
    driver.set_window_size(*WINDOW)
    inner = driver.execute_script("return [window.innerWidth, window.innerHeight]")
    driver.set_window_size(2 * WINDOW[0] - inner[0], 2 * WINDOW[1] - inner[1])


def window_shot(driver, name: str) -> Path:
    """The 1400x1000 page area as it is (scrolled to the top): what a user sees without scrolling."""
    set_viewport(driver)
    driver.execute_script("window.scrollTo(0, 0)")
    time.sleep(0.8)
    SHOTS.mkdir(parents=True, exist_ok=True)
    path = SHOTS / f"{name}.png"
    driver.save_screenshot(str(path))
    return path


def both(driver, name: str) -> list[Path]:
    shots = [window_shot(driver, name), screenshot(driver, f"{name}-page")]
    set_viewport(driver)
    return shots


def summaries_shown(driver) -> bool:
    boxes = [(css(driver, f"#summary-{s} textarea") or [None])[0] for s in SLOTS]
    return all(b is not None and b.get_attribute("value") for b in boxes)


def compare_tab(driver, row) -> tuple[list[Path], float]:
    shots = [window_shot(driver, "demo-compare-start")]  # greedy: beams/temperature/top-p/seed greyed out
    type_into(driver, "#compare-dialogue textarea", row["dialogue"])
    type_into(driver, "#compare-reference textarea", row["references"][0])
    clicked = time.perf_counter()
    css(driver, "#compare-run")[0].click()
    wait(driver, lambda d: summaries_shown(d) and len(css(d, ".wb-card .wb-badge")) >= 8, timeout=180,
         message="no four summaries")
    latency = time.perf_counter() - clicked
    shots += both(driver, "demo-compare")
    type_into(driver, "#compare-reference textarea", "")  # no reference: no word-overlap boxes
    css(driver, "#compare-run")[0].click()
    wait(driver, lambda d: "no reference" in css(d, "#card-base")[0].text, timeout=180, message="no rerun")
    shots.append(screenshot(driver, "demo-compare-no-reference-page"))
    set_viewport(driver)
    return shots + slot_chooser(driver), latency


def slot_chooser(driver) -> list[Path]:
    """Tick every further slot of the config (e.g. ORPO) and compare again: five or more cards side by side."""
    boxes = css(driver, "#compare-slots label")
    for box in boxes[len(SLOTS):]:
        box.click()
    time.sleep(1)
    css(driver, "#compare-run")[0].click()
    wait(driver, lambda d: summaries_shown(d) and len(css(d, ".wb-card .wb-badge")) >= 8, timeout=180,
         message="no rerun with more slots")
    time.sleep(1)
    return both(driver, "demo-compare-slots")


def prompting_tab(driver, row) -> list[Path]:
    open_tab(driver, "Prompting")
    type_into(driver, "#prompt-dialogue textarea", row["dialogue"])
    [typed] = [b for b in css(driver, "label") if b.text.strip() == "typed"]
    typed.click()  # typed shots, left empty: the run says it was zero-shot
    css(driver, "#prompt-run")[0].click()
    wait(driver, lambda d: "tokens" in css(d, "#prompt-tokens")[0].text, timeout=120, message="no prompt")
    return both(driver, "demo-prompting")


def toxicity_tab(driver) -> list[Path]:
    open_tab(driver, "Toxicity")
    css(driver, "#tox-run")[0].click()
    time.sleep(4)
    shots = [screenshot(driver, "demo-toxicity-progress-page")]  # one progress bar while the sample runs
    driver.set_window_size(*WINDOW)
    wait(driver, lambda d: len(css(d, "#tox-plot .js-plotly-plot .boxlayer .trace")) >= 4, timeout=600,
         message="the toxicity sample did not render")
    return shots + both(driver, "demo-toxicity")


def dashboard_tab(driver) -> list[Path]:
    """The Dashboard as it opens (real dialogues), then on the demo test split: PPO vs ORPO from their shared start."""
    open_tab(driver, "Dashboard")
    wait(driver, lambda d: len(css(d, ".js-plotly-plot .main-svg")) >= 5, message="no dashboard charts")
    time.sleep(2)
    shots = both(driver, "demo-dashboard")
    css(driver, "#dash-dataset input")[0].click()
    wait(driver, lambda d: [o for o in css(d, "[role=option]") if o.text.strip().startswith("demo")],
         message="no demo entry in the dataset menu")
    [o for o in css(driver, "[role=option]") if o.text.strip().startswith("demo")][0].click()
    wait(driver, lambda d: css(d, "#dash-pref .js-plotly-plot"), timeout=60, message="no PPO vs ORPO chart")
    time.sleep(2)
    return shots + [screenshot(driver, "demo-dashboard-demo-split-page")]


def main() -> int:
    rows = data.load_dialogues(data.DEMO, "test")
    row = next((r for r in rows if r["topic"] in HEATED), rows[0])  # something for the toxicity scores to see
    with tempfile.TemporaryDirectory() as tmp:
        started = time.perf_counter()
        with launched_app(str(DEFAULT_CONFIG), [], Path(tmp) / "app.log") as (url, _):
            ready = time.perf_counter() - started
            driver = chrome(Path(tmp) / "profile")
            try:
                driver.set_window_size(*WINDOW)
                open_app(driver, url)
                shots, latency = compare_tab(driver, row)
                shots += prompting_tab(driver, row)
                shots += toxicity_tab(driver)
                shots += dashboard_tab(driver)
                open_tab(driver, "Preferences")
                time.sleep(3)
                shots += both(driver, "demo-preferences")
            finally:
                driver.quit()
    print(f"app ready {ready:.1f} s after launch; Compare in the browser: {latency:.2f} s ({row['fname']})")
    print("\n".join(str(p) for p in shots))
    return 0


if __name__ == "__main__":
    sys.exit(main())
