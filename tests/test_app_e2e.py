"""End to end in a real browser: `pixglot ui` serves a tiny collection; headless Chromium searches it in
Arabic and in Japanese and the result grid's images load. A screenshot is kept for people to look at."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from app_support import N_IMAGES, WAIT_SECONDS, build_library, free_port, wait_until_healthy
from selenium import webdriver
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.common.keys import Keys
from selenium.webdriver.support import expected_conditions
from selenium.webdriver.support.ui import WebDriverWait

REPO = Path(__file__).resolve().parent.parent
SCREENSHOT = REPO / "test-artifacts" / "ui-e2e.png"  # git-ignored
LOADED_RESULT_IMAGES = (
    "return Array.from(document.querySelectorAll('.st-key-results img'))"
    ".filter(img => img.complete && img.naturalWidth > 0).length"
)


def find_chromium() -> tuple[str | None, str | None]:
    browser = next(
        (p for p in map(shutil.which, ("chromium", "chromium-browser", "google-chrome")) if p), None
    )
    driver = (
        "/usr/bin/chromedriver" if os.path.exists("/usr/bin/chromedriver") else shutil.which("chromedriver")
    )
    return browser, driver


def browser(binary: str, driver: str, profile: Path) -> webdriver.Chrome:
    options = webdriver.ChromeOptions()
    options.binary_location = binary
    for flag in (
        "--headless=new",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-dev-shm-usage",
        "--disable-background-networking",
        "--disable-component-update",
        "--no-first-run",
        "--disable-sync",
        f"--user-data-dir={profile}",
        "--window-size=1280,1000",
    ):
        options.add_argument(flag)
    return webdriver.Chrome(service=Service(driver), options=options)


def search(chrome: webdriver.Chrome, words: str) -> None:
    wait = WebDriverWait(chrome, WAIT_SECONDS)
    box = wait.until(expected_conditions.element_to_be_clickable((By.CSS_SELECTOR, ".st-key-text input")))
    box.send_keys(Keys.CONTROL, "a")
    box.send_keys(Keys.DELETE)
    box.send_keys(words, Keys.ENTER)
    # The grid's heading names the query it shows, so results of the previous query do not count.
    wait.until(
        lambda c: (
            words in c.find_element(By.CSS_SELECTOR, ".st-key-results").text
            and c.execute_script(LOADED_RESULT_IMAGES) >= N_IMAGES
        )
    )


def test_search_in_arabic_and_japanese_in_a_real_browser(pixglot_home, tmp_path):
    binary, driver = find_chromium()
    if binary is None or driver is None:
        reason = "Chromium not found" if binary is None else "chromedriver not found"
        print(f"skipping the browser test: {reason} (apt-get install chromium chromium-driver)")
        pytest.skip(reason)
    build_library(pixglot_home, tmp_path / "images")
    port = free_port()
    log = tmp_path / "server.log"
    with open(log, "wb") as out:
        server = subprocess.Popen(
            [sys.executable, "-m", "pixglot", "ui", "--collection", "t", "--port", str(port)],
            env={**os.environ, "PIXGLOT_HOME": str(pixglot_home)},
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    chrome = None
    try:
        wait_until_healthy(port, server, log)
        chrome = browser(binary, driver, tmp_path / "chromium-profile")
        chrome.get(f"http://127.0.0.1:{port}/")
        for words in ("قطة", "猫"):
            search(chrome, words)
            assert chrome.execute_script(LOADED_RESULT_IMAGES) == N_IMAGES
        SCREENSHOT.parent.mkdir(exist_ok=True)
        chrome.save_screenshot(str(SCREENSHOT))
        print(f"screenshot: {SCREENSHOT}")
        assert "Traceback" not in log.read_text()
    finally:
        if chrome is not None:
            chrome.quit()
        os.killpg(server.pid, signal.SIGTERM)
        try:
            server.wait(timeout=15)
        except subprocess.TimeoutExpired:
            os.killpg(server.pid, signal.SIGKILL)
            server.wait()
