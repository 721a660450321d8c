"""Screenshots of the real app on the committed demo family, as a user meets it (not part of the test run).

    python -m tests.screenshots            # -> artifacts/screenshots/demo-{compare,prompting,toxicity,dashboard}.png

Launches `python -m workbench` (what `make run` serves), drives every tab in headless Chromium with a heated
dialogue from the demo test split, and prints the start-up time and the Compare latency seen in the browser.
"""

from __future__ import annotations

import sys
import tempfile
import time
from pathlib import Path

from benchmarks.load import launched_app
from tests.browser_kit import chrome, css, open_app, open_tab, screenshot, type_into, wait
from workbench import data
from workbench.corpus import HEATED
from workbench.modelset import DEFAULT_CONFIG, SLOTS


def main() -> int:
    rows = data.load_dialogues(data.DEMO, "test")
    row = next((r for r in rows if r["topic"] in HEATED), rows[0])  # something for the toxicity scores to see
    shots = []
    with tempfile.TemporaryDirectory() as tmp:
        started = time.perf_counter()
        with launched_app(str(DEFAULT_CONFIG), [], Path(tmp) / "app.log") as (url, _):
            ready = time.perf_counter() - started
            driver = chrome(Path(tmp) / "profile")
            try:
                open_app(driver, url)
                type_into(driver, "#compare-dialogue textarea", row["dialogue"])
                type_into(driver, "#compare-reference textarea", row["references"][0])
                clicked = time.perf_counter()
                css(driver, "#compare-run")[0].click()
                wait(driver, lambda d: all((css(d, f"#summary-{s} textarea") or [None])[0] is not None
                                           and css(d, f"#summary-{s} textarea")[0].get_attribute("value")
                                           for s in SLOTS), timeout=120, message="no four summaries")
                latency = time.perf_counter() - clicked
                shots.append(screenshot(driver, "demo-compare"))

                open_tab(driver, "Prompting")
                type_into(driver, "#prompt-dialogue textarea", row["dialogue"])
                css(driver, "#prompt-run")[0].click()
                wait(driver, lambda d: "tokens" in css(d, "#prompt-tokens")[0].text, message="no prompt")
                shots.append(screenshot(driver, "demo-prompting"))

                open_tab(driver, "Toxicity")
                css(driver, "#tox-run")[0].click()
                wait(driver, lambda d: len(css(d, "#tox-plot .js-plotly-plot .boxlayer .trace")) >= 4, timeout=300,
                     message="the toxicity sample did not render")
                shots.append(screenshot(driver, "demo-toxicity"))

                open_tab(driver, "Dashboard")
                wait(driver, lambda d: len(css(d, ".js-plotly-plot .main-svg")) >= 5, message="no dashboard charts")
                time.sleep(2)
                shots.append(screenshot(driver, "demo-dashboard"))
            finally:
                driver.quit()
    print(f"app ready {ready:.1f} s after launch; Compare in the browser: {latency:.2f} s ({row['fname']})")
    print("\n".join(str(p) for p in shots))
    return 0


if __name__ == "__main__":
    sys.exit(main())
