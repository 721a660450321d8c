"""Selenium helpers for driving the workbench in headless Chromium: the browser tests and `python -m tests.screenshots`."""

from __future__ import annotations

import shutil
import time
from pathlib import Path

from workbench import paths

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
CHROMEDRIVER = shutil.which("chromedriver") or "/usr/bin/chromedriver"
SHOTS = paths.REPO_ROOT / "artifacts" / "screenshots"
AVAILABLE = Path(CHROMIUM).exists() and Path(CHROMEDRIVER).exists()  # the browser tests skip without them
MISSING = "chromium and chromedriver are not installed (apt-get install chromium chromium-driver)"


def chrome(profile_dir: Path):
    """A headless Chromium (Debian's chromium + chromium-driver) with its own profile folder."""
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                "--disable-background-networking", "--disable-component-update", "--disable-sync", "--no-first-run",
                "--window-size=1400,1600", f"--user-data-dir={profile_dir}"):
        options.add_argument(arg)
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
    driver.set_page_load_timeout(60)
    return driver


def wait(driver, condition, timeout=60, message=""):
    """Wait for `condition(driver)`; on timeout the page is saved as artifacts/screenshots/timeout-*.png for CI."""
    from selenium.common.exceptions import TimeoutException
    from selenium.webdriver.support.ui import WebDriverWait

    try:
        return WebDriverWait(driver, timeout, poll_frequency=0.25).until(lambda d: condition(d), message)
    except TimeoutException:
        name = "timeout-" + "".join(c if c.isalnum() else "-" for c in message)[:60]
        shot = screenshot(driver, name)
        text = driver.find_element("tag name", "body").text[-1500:]
        raise TimeoutException(f"{message} (page saved to {shot}; its text ends: {text!r})") from None


def css(driver, selector):
    from selenium.webdriver.common.by import By

    return driver.find_elements(By.CSS_SELECTOR, selector)


def open_app(driver, url):
    driver.get(url)
    wait(driver, lambda d: css(d, "#compare-dialogue textarea") and css(d, "#wb-status .wb-slot"),
         message="the app did not render")


def open_tab(driver, name):
    [tab] = [t for t in css(driver, "button[role=tab]") if t.text.strip() == name]
    tab.click()
    time.sleep(0.5)


def screenshot(driver, name: str) -> Path:
    """A full-height PNG of the page in artifacts/screenshots/<name>.png."""
    height = driver.execute_script("return document.body.scrollHeight")
    driver.set_window_size(1400, min(max(height + 60, 900), 3600))
    time.sleep(0.5)
    SHOTS.mkdir(parents=True, exist_ok=True)
    path = SHOTS / f"{name}.png"
    driver.save_screenshot(str(path))
    driver.set_window_size(1400, 1600)
    return path


def type_into(driver, selector, text):
    [box] = css(driver, selector)
    box.clear()
    driver.execute_script(  # set the value as a paste would, then let the framework see an input event
        "arguments[0].value = arguments[1]; arguments[0].dispatchEvent(new Event('input', {bubbles: true}));",
        box, text)
