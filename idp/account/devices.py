"""A device as people name it ("Chrome on Linux"), read from the User-Agent its browser sent with ua-parser, the
Python reader of the uap-core rules (ua-parser-builtins, republished as browsers change)."""

from __future__ import annotations

from dataclasses import dataclass

from ua_parser import parse_os, parse_user_agent

#: ua-parser names the phone builds of a browser apart; people call them by the browser's name.
BROWSER_NAMES = {
    "Chrome Mobile": "Chrome",
    "Chrome Mobile iOS": "Chrome",
    "Chrome Mobile WebView": "Chrome",
    "Firefox Mobile": "Firefox",
    "Firefox iOS": "Firefox",
    "Mobile Safari": "Safari",
    "Mobile Safari UI/WKWebView": "Safari",
    "Edge Mobile": "Edge",
    "Opera Mobile": "Opera",
}
SYSTEM_NAMES = {"Mac OS X": "macOS"}


@dataclass(frozen=True)
class Device:
    """The browser and operating system of a User-Agent, each None when the rules do not know it."""

    browser: str | None
    system: str | None


def device_of(user_agent: str | None) -> Device:
    if not user_agent:
        return Device(None, None)
    browser, system = parse_user_agent(user_agent), parse_os(user_agent)
    return Device(
        browser=BROWSER_NAMES.get(browser.family, browser.family) if browser else None,
        system=SYSTEM_NAMES.get(system.family, system.family) if system else None,
    )
