"""Fixtures for the browser tests: Debian's Chromium driven by Playwright's sync API, held as a phone.

The browser is started once per session. Where Chromium is not installed the tests skip, with the reason;
where it is installed but Playwright cannot start it, the fixture fails with Playwright's error.
"""

from __future__ import annotations

import re
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]

#: A small Android phone: 360 CSS pixels wide, a touch screen, Persian (Iran) as the browser's language.
PHONE = {
    "viewport": {"width": 360, "height": 780},
    "device_scale_factor": 2,
    "is_mobile": True,
    "has_touch": True,
    "locale": "fa-IR",
}

ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts" / "browser"


def chromium_path() -> str | None:
    if Path("/usr/bin/chromium").exists():
        return "/usr/bin/chromium"
    return shutil.which("chromium")


@pytest.fixture(scope="session")
def chromium() -> Iterator:
    executable = chromium_path()
    if executable is None:
        pytest.skip("Chromium is not installed (no /usr/bin/chromium, no `chromium` on PATH): browser tests skipped")
    from playwright.sync_api import sync_playwright

    playwright = sync_playwright().start()
    try:
        browser = playwright.chromium.launch(executable_path=executable, args=CHROMIUM_ARGS, headless=True)
        try:
            yield browser
        finally:
            browser.close()
    finally:
        playwright.stop()


@pytest.fixture
def phone_page(chromium) -> Iterator:
    """A fresh browser profile (no cookies) with one page, held as a phone; pages time out after 15 s."""
    context = chromium.new_context(**PHONE)
    context.set_default_timeout(15_000)
    page = context.new_page()
    try:
        yield page
    finally:
        context.close()


@pytest.fixture
def artifacts_dir(request: pytest.FixtureRequest) -> Path:
    """test-artifacts/browser/<test name>/ (git-ignored), emptied at the start of the test."""
    name = re.sub(r"[^A-Za-z0-9_.-]+", "-", request.node.name).strip("-")
    folder = ARTIFACTS / name
    if folder.exists():
        shutil.rmtree(folder)
    folder.mkdir(parents=True)
    return folder
