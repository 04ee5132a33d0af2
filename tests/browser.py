"""A real headless Chromium driven by Selenium, for the dashboard tests.

Debian's ``chromium`` and ``chromedriver`` (``scripts/install-browser``); both paths are
given explicitly, so Selenium Manager never runs and nothing is downloaded.
"""

from __future__ import annotations

import base64
import json
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

from selenium import webdriver
from selenium.common.exceptions import TimeoutException
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.remote.webelement import WebElement
from selenium.webdriver.support.ui import Select, WebDriverWait

from helpers import REPO

CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"
SCREENSHOTS = REPO / "test-artifacts" / "screenshots"
FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-dev-shm-usage",
    "--window-size=1400,1000",
)


def available() -> bool:
    return os.access(CHROMIUM, os.X_OK) and os.access(CHROMEDRIVER, os.X_OK)


class Browser:
    """One Chromium with a fresh profile, and helpers to wait, read and take screenshots."""

    def __init__(self, profile_dir: Path, base_url: str) -> None:
        options = webdriver.ChromeOptions()
        options.binary_location = CHROMIUM
        for flag in FLAGS:
            options.add_argument(flag)
        options.add_argument(f"--user-data-dir={profile_dir}")
        options.set_capability("goog:loggingPrefs", {"performance": "ALL", "browser": "ALL"})
        service = Service(
            executable_path=CHROMEDRIVER, log_output=str(profile_dir.parent / "chromedriver.log")
        )
        self.driver = webdriver.Chrome(service=service, options=options)
        self.driver.set_page_load_timeout(30)
        self.base_url = base_url
        self.requests: list[str] = []
        self.console: list[dict[str, Any]] = []

    def close(self) -> None:
        self.driver.quit()

    # -- navigation and waiting ---------------------------------------------------------

    def open(self, path: str = "/") -> None:
        self.driver.get(self.base_url + path)
        self.wait(lambda: self.js("return document.body.dataset.booted === 'true'"))

    def reload(self) -> None:
        self.driver.refresh()
        self.wait(lambda: self.js("return document.body.dataset.booted === 'true'"))

    def js(self, script: str, *args: Any) -> Any:
        return self.driver.execute_script(script, *args)

    def wait(self, condition: Callable[[], Any], timeout: float = 30, what: str = "") -> Any:
        try:
            return WebDriverWait(self.driver, timeout, poll_frequency=0.1).until(
                lambda _: condition()
            )
        except TimeoutException:
            raise AssertionError(
                f"timed out waiting for {what or condition}; console: {self.read_console()}"
            ) from None

    def find(self, css: str) -> WebElement:
        return self.driver.find_element(By.CSS_SELECTOR, css)

    def find_all(self, css: str) -> list[WebElement]:
        return self.driver.find_elements(By.CSS_SELECTOR, css)

    def visible(self, css: str) -> bool:
        found = self.find_all(css)
        return bool(found) and found[0].is_displayed()

    def wait_for(self, css: str, timeout: float = 30) -> WebElement:
        self.wait(lambda: self.visible(css), timeout, what=css)
        return self.find(css)

    def go(self, page: str) -> None:
        """Open a page from the navigation and wait until it has rendered."""
        self.find(f'nav a[data-page="{page}"]').click()
        self.wait_page(page)

    def wait_page(self, page: str, timeout: float = 60) -> str:
        def done() -> str | None:
            state = self.js(
                "const m = document.getElementById('main');"
                "return m.dataset.page === arguments[0] && m.dataset.route === location.hash"
                " ? m.dataset.state : null",
                page,
            )
            return state if state in {"ready", "forbidden", "error"} else None

        state: str = self.wait(done, timeout, what=f"page {page}")
        if state == "error":
            raise AssertionError(f"page {page} failed: {self.find('main').text}")
        return state

    def choose(self, element: WebElement, value: str) -> None:
        """Pick the option with this value in a select (fires its change event)."""
        Select(element).select_by_value(value)

    def text(self, css: str) -> str:
        return str(self.find(css).text)

    # -- what the browser did ----------------------------------------------------------

    def read_network(self) -> list[str]:
        """URLs the page requested since the last call (from Chrome's performance log)."""
        for entry in self.driver.get_log("performance"):
            message = json.loads(entry["message"])["message"]
            if message["method"] == "Network.requestWillBeSent":
                self.requests.append(message["params"]["request"]["url"])
        return self.requests

    def read_console(self) -> list[dict[str, Any]]:
        self.console.extend(self.driver.get_log("browser"))
        return self.console

    def screenshot(self, name: str) -> Path:
        """The whole page, beyond the window's height, as a PNG."""
        SCREENSHOTS.mkdir(parents=True, exist_ok=True)
        path = SCREENSHOTS / f"{name}.png"
        size = self.driver.execute_cdp_cmd("Page.getLayoutMetrics", {})["cssContentSize"]
        clip = {"x": 0, "y": 0, "width": size["width"], "height": min(size["height"], 8000)}
        shot = self.driver.execute_cdp_cmd(
            "Page.captureScreenshot",
            {"format": "png", "captureBeyondViewport": True, "clip": {**clip, "scale": 1}},
        )
        path.write_bytes(base64.b64decode(shot["data"]))
        return path
