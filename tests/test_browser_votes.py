"""Votes in a real browser: Compare, pick the best summary, write a better one, Save vote; the vote shows in the
Preferences tab (counts, leaderboard, latest votes, win-rate chart) and is on disk. Markup in the voted dialogue is
shown as text in the latest-votes table, never run. Skipped only when chromium or chromedriver is not installed."""

from __future__ import annotations

import time

import pytest

from tests import ui_fixtures as uf
from tests.browser_kit import AVAILABLE, MISSING, chrome, css, open_app, open_tab, screenshot, type_into, wait
from workbench import preferences, votes
from workbench.modelset import LABELS, SLOTS

EVIL = '<img src=x onerror="window.__pwned=1">'
OWN = "Tom invites Ann to play tennis on Saturday at 10 am; she agrees."

pytestmark = pytest.mark.skipif(not AVAILABLE, reason=MISSING)


@pytest.fixture(scope="module")
def server(tmp_path_factory, tiny_tokenizer, tiny_model_dir):
    patch = pytest.MonkeyPatch()
    wb = uf.Workbench(tmp_path_factory.mktemp("wb-browser-votes"), tiny_tokenizer, tiny_model_dir, patch)
    with uf.launched(wb.service) as (_, url):
        yield url
    patch.undo()


@pytest.fixture(scope="module")
def browser(tmp_path_factory):
    driver = chrome(tmp_path_factory.mktemp("chromium-profile-votes"))
    yield driver
    driver.quit()


def choice(driver, group: str, text: str):
    """The input of a Radio/CheckboxGroup option by its label text."""
    found = [label for label in css(driver, f"#{group} label") if label.text.strip() == text]
    return found[0].find_element("css selector", "input") if found else None


def test_vote_in_compare_shows_in_preferences_and_is_on_disk(server, browser):
    open_app(browser, server)
    type_into(browser, "#compare-dialogue textarea",
              f"#Person1#: Shall we play tennis on Saturday? {EVIL}\n#Person2#: Sure, see you at the park.")
    css(browser, "#vote-save")[0].click()  # before any Compare
    wait(browser, lambda d: "Nothing to vote on yet" in css(d, "#vote-notice")[0].text, message="no 'nothing yet'")
    css(browser, "#compare-run")[0].click()
    wait(browser, lambda d: len(css(d, ".wb-card .wb-badge")) >= 8 and choice(d, "vote-best", "LoRA"), timeout=120,
         message="the summaries and the vote choices did not appear")
    css(browser, "#vote-save")[0].click()  # nothing picked yet
    wait(browser, lambda d: "Pick the best summary" in css(d, "#vote-notice")[0].text, message="no 'pick' message")

    texts = {s: css(browser, f"#summary-{s} textarea")[0].get_attribute("value") for s in SLOTS}
    best, worst = [s for s in SLOTS if texts[s].strip()][0], SLOTS[-1] if texts[SLOTS[0]].strip() else SLOTS[0]
    browser.execute_script("arguments[0].click()", choice(browser, "vote-best", LABELS[best]))
    if worst != best:  # a tiny random model may write nothing: the best is one that wrote something
        browser.execute_script("arguments[0].click()", choice(browser, "vote-unacceptable", LABELS[worst]))
    type_into(browser, "#vote-own textarea", OWN)
    time.sleep(0.5)
    css(browser, "#vote-save")[0].click()
    wait(browser, lambda d: "Vote saved" in css(d, "#vote-notice")[0].text, message="the vote was not saved")
    notice = css(browser, "#vote-notice")[0].text
    assert f"{LABELS[best]} is the best" in notice and "your summary beats every shown one" in notice
    screenshot(browser, "compare-vote")

    [pairs] = [preferences.load_pairs(votes.DEFAULT_DATASET)]  # on disk when the page says so
    assert len({p["vote_id"] for p in pairs}) == 1 and pairs[0]["voter"] == "anonymous"
    assert ("own", "own_summary") in {(p["chosen_slot"], p["reason"]) for p in pairs}
    assert {p["chosen"] for p in pairs if p["reason"] == "best"} <= {texts[best]}
    assert {p["chosen"] for p in pairs if p["chosen_slot"] == "own"} == {OWN}
    vote_id = pairs[0]["vote_id"]

    open_tab(browser, "Preferences")
    wait(browser, lambda d: "1 vote by 1 voter on 1 dialogue" in css(d, "#prefs-counts")[0].text
         and vote_id in css(d, "#prefs-latest")[0].text and css(d, "#prefs-winrates .js-plotly-plot .bars .point"),
         message="the vote did not show in the Preferences tab")
    assert uf.REPOS[worst] in css(browser, "#prefs-leaderboard")[0].text
    assert "onerror" in css(browser, "#prefs-latest")[0].text  # the dialogue's markup is shown as text ...
    assert not css(browser, "img[src='x']")  # ... and never parsed
    assert browser.execute_script("return typeof window.__pwned") == "undefined"
    css(browser, "#prefs-export")[0].click()
    wait(browser, lambda d: ".zip" in css(d, "#prefs-file")[0].text, message="the export did not appear")
    assert "local--votes" in css(browser, "#prefs-file")[0].text
    screenshot(browser, "preferences")
