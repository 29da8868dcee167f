"""Debian's headless chromium driven by Selenium (chromium-driver), for the page's tests.

The browser and its driver are Debian's packages (``apt-get install chromium chromium-driver``;
``.ci/run`` installs them when missing): Selenium is given both paths, so it never looks for or
downloads a browser of its own. Basic auth is sent as a header on every request (the DevTools
protocol), as a browser that was given the credentials does.
"""

from __future__ import annotations

import base64
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from selenium import webdriver
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.remote.webdriver import WebDriver

CHROMIUM = Path("/usr/bin/chromium")
CHROMEDRIVER = Path("/usr/bin/chromedriver")
ARGUMENTS = (
    "--headless=new",
    "--no-sandbox",  # the tests run as root
    "--disable-dev-shm-usage",
    "--window-size=1200,900",
    "--mute-audio",
    "--autoplay-policy=no-user-gesture-required",
)


def missing() -> str | None:
    """What is missing to run the browser tests (they fail with it: never skipped)."""
    absent = [str(p) for p in (CHROMIUM, CHROMEDRIVER) if not p.exists()]
    if absent:
        return f"{', '.join(absent)} missing: apt-get install -y chromium chromium-driver"
    return None


@contextmanager
def chromium(user: str | None = None, password: str | None = None) -> Iterator[WebDriver]:
    """A headless chromium, quit afterwards; with credentials, every request carries them."""
    problem = missing()
    assert problem is None, problem
    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    for argument in ARGUMENTS:
        options.add_argument(argument)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(service=Service(str(CHROMEDRIVER)), options=options)
    try:
        driver.set_page_load_timeout(60)
        driver.set_script_timeout(60)
        if user is not None and password is not None:
            token = base64.b64encode(f"{user}:{password}".encode()).decode()
            driver.execute_cdp_cmd("Network.enable", {})
            driver.execute_cdp_cmd(
                "Network.setExtraHTTPHeaders", {"headers": {"Authorization": f"Basic {token}"}}
            )
        yield driver
    finally:
        driver.quit()


def console_problems(driver: WebDriver) -> list[dict[str, Any]]:
    """The console's errors and warnings since the last call (reading the log empties it)."""
    entries: list[dict[str, Any]] = driver.get_log("browser")
    return [e for e in entries if e.get("level") in ("SEVERE", "WARNING")]
