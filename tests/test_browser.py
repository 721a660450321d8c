"""The app in a real browser: headless Chromium driven by selenium against a launched server on tiny models.

Checks that Compare shows four summaries with toxicity scores, that HTML/JS typed by a user or produced by a model
never runs, that every tab renders (Plotly offline included), and writes screenshots to artifacts/screenshots/.
Skipped only when chromium or chromedriver is not installed (CI installs both).
"""

from __future__ import annotations

import time

import pytest

from tests import ui_fixtures as uf
from tests.browser_kit import (AVAILABLE, MISSING, SHOTS, chrome, css, open_app, open_tab, screenshot, type_into,
                               wait)

EVIL = '<img src=x onerror="window.__pwned=1;alert(1)"><script>window.__pwned=2</script>'
MARKER = "#Person9#"  # a dialogue containing it makes the stub model answer with EVIL

pytestmark = pytest.mark.skipif(not AVAILABLE, reason=MISSING)


@pytest.fixture(scope="module")
def server(tmp_path_factory, tiny_tokenizer, tiny_model_dir):
    patch = pytest.MonkeyPatch()
    wb = uf.Workbench(tmp_path_factory.mktemp("wb-browser"), tiny_tokenizer, tiny_model_dir, patch)
    real = wb.models.summarize

    def summarize(prompts_by_slot, *args, **kwargs):  # a "model" that answers with markup, for the XSS check
        out = real(prompts_by_slot, *args, **kwargs)
        if MARKER in next(iter(prompts_by_slot.values())) and out["full"].text is not None:
            out["full"].text = f"{EVIL} #Person1# books a table"
        return out

    patch.setattr(wb.models, "summarize", summarize)
    with uf.launched(wb.service) as (_, url):
        yield url
    patch.undo()


@pytest.fixture(scope="module")
def browser(tmp_path_factory):
    driver = chrome(tmp_path_factory.mktemp("chromium-profile"))
    SHOTS.mkdir(parents=True, exist_ok=True)
    yield driver
    driver.quit()


def assert_no_script_ran(driver):
    from selenium.common.exceptions import NoAlertPresentException

    assert driver.execute_script("return typeof window.__pwned") == "undefined"
    with pytest.raises(NoAlertPresentException):
        driver.switch_to.alert.text  # noqa: B018


def summaries(driver):
    return [(css(driver, f"#summary-{slot} textarea") or [None])[0] for slot in ("base", "full", "lora", "ppo")]


def test_compare_shows_four_summaries_and_runs_no_injected_code(server, browser):
    open_app(browser, server)
    dialogue = (f"#Person1#: I'd like to book a table for two at 7 pm. {EVIL}\n#Person2#: Certainly, what name?\n"
                f"{MARKER}: <script>alert('x')</script>")
    type_into(browser, "#compare-dialogue textarea", dialogue)
    type_into(browser, "#compare-reference textarea", f"#Person1# books a table for two. {EVIL}")
    css(browser, "#compare-run")[0].click()
    wait(browser, lambda d: all(s is not None and s.get_attribute("value") for s in summaries(d))
         and len(css(d, ".wb-card .wb-badge")) >= 8, timeout=120,
         message="four summaries with badges did not appear")
    cards = [css(browser, f"#card-{slot}")[0].text for slot in ("base", "full", "lora", "ppo")]
    assert all("toxicity" in c for c in cards) and all("R-1" in c for c in cards)
    full_text = summaries(browser)[1].get_attribute("value")
    assert full_text.startswith(EVIL)  # the model's markup is shown as text ...
    assert not css(browser, "img[src='x']") and not css(browser, "#overlap-full script")  # ... and never parsed
    assert "onerror" in css(browser, "#overlap-full")[0].text
    time.sleep(1.0)
    assert_no_script_ran(browser)
    screenshot(browser, "compare")


def column_shown(driver, slot: str) -> bool:
    """Whether the slot's column is on the page (read with JavaScript: gradio re-renders a column it shows or hides,
    so a selenium element found a moment before may be stale)."""
    return driver.execute_script(f"const c = document.getElementById('col-{slot}'); "
                                 "return !!c && c.offsetParent !== null;")


def test_the_slot_chooser_shows_the_chosen_models_and_refuses_fewer_than_two(server, browser):
    open_app(browser, server)
    assert all(column_shown(browser, s) for s in ("base", "full", "lora", "ppo"))

    def tick(label):
        [box] = [b for b in css(browser, "#compare-slots label") if b.text.strip() == label]
        box.click()

    tick("Full fine-tune")
    wait(browser, lambda d: not column_shown(d, "full"), message="the unticked column stayed")
    type_into(browser, "#compare-dialogue textarea", "#Person1#: Can we meet at noon?\n#Person2#: Yes, at the cafe.")
    css(browser, "#compare-run")[0].click()
    # a tiny random model may write an empty summary: the scored cards say that all three answered
    wait(browser, lambda d: all("toxicity" in css(d, f"#card-{s}")[0].text for s in ("base", "lora", "ppo")),
         timeout=120, message="three summaries")
    assert "R-1" not in css(browser, "#card-base")[0].text  # no reference: no ROUGE
    for label in ("LoRA", "PPO (detoxified LoRA)"):
        tick(label)
    wait(browser, lambda d: "Choose from 2 to 6 models" in css(d, "#compare-notice")[0].text,
         message="no message for a single model")
    # base and PPO were the last valid choice: their columns stay
    assert column_shown(browser, "ppo") and not column_shown(browser, "lora") and not column_shown(browser, "full")
    tick("Full fine-tune")  # two again: base and full
    wait(browser, lambda d: column_shown(d, "full") and not column_shown(d, "ppo"), message="columns not updated")
    screenshot(browser, "compare-slots")


def test_empty_input_shows_message(server, browser):
    open_app(browser, server)
    type_into(browser, "#compare-dialogue textarea", "   \n  ")
    css(browser, "#compare-run")[0].click()
    wait(browser, lambda d: "empty" in (css(d, "#compare-notice")[0].text or ""), message="no empty-input message")


def test_prompting_tab(server, browser):
    open_app(browser, server)
    open_tab(browser, "Prompting")
    type_into(browser, "#prompt-dialogue textarea", "#Person1#: Can we meet at noon?\n#Person2#: Yes, at the cafe.")
    css(browser, "#prompt-run")[0].click()
    wait(browser, lambda d: (css(d, "#prompt-text textarea") or [None])[0] is not None
         and "Summarize the following conversation." in css(d, "#prompt-text textarea")[0].get_attribute("value")
         and "tokens" in css(d, "#prompt-tokens")[0].text, message="the prompt did not appear")
    assert_no_script_ran(browser)
    screenshot(browser, "prompting")


def test_toxicity_tab(server, browser):
    open_app(browser, server)
    open_tab(browser, "Toxicity")
    type_into(browser, "#tox-text textarea", f"You are a stupid idiot {EVIL}")
    css(browser, "#tox-score")[0].click()
    wait(browser, lambda d: "probability toxic" in css(d, "#tox-score-result")[0].text, message="no score shown")
    css(browser, "#tox-run")[0].click()
    wait(browser, lambda d: "dialogues from demo" in css(d, "#tox-message")[0].text
         and len(css(d, "#tox-plot .js-plotly-plot .boxlayer .trace")) >= 4, timeout=120,
         message="the toxicity sample did not render")
    assert_no_script_ran(browser)
    screenshot(browser, "toxicity")


def test_dashboard_renders_plotly_offline(server, browser):
    open_app(browser, server)
    open_tab(browser, "Dashboard")
    wait(browser, lambda d: len(css(d, ".js-plotly-plot")) >= 5 and len(css(d, ".js-plotly-plot .main-svg")) >= 5
         and "measured run" in css(d, "#dash-message")[0].text, message="the dashboard charts did not render")
    assert len(css(browser, "#dash-rouge .js-plotly-plot .bars .point")) >= 16  # 4 models x 4 ROUGE types
    assert "ppo-test" in css(browser, "#dash-runs")[0].text
    assert "No preference-optimisation run" in css(browser, "#dash-pref-message")[0].text  # one line, no chart
    assert not css(browser, "#dash-pref .js-plotly-plot")
    screenshot(browser, "dashboard")
