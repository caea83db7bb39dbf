"""Playing Claude Code and the browser through the gateway's sign-in, over HTTP.

Used by the sign-in tests and by the end-to-end test that drives the real CLI
(which shows the verification URL; this module plays the browser part).
"""

from __future__ import annotations

import re
import time
from typing import Any
from urllib.parse import urlsplit

import requests

USER_AGENT = "claude-code/2.1.333 (tests)"


def origin_of(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}"


def device_authorize(base: str, **extra: str) -> dict[str, Any]:
    """What Claude Code's /login posts: `surface=claude_code`, no client_id."""
    response = requests.post(
        f"{base}/oauth/device_authorization",
        data={"surface": "claude_code", **extra},
        headers={"User-Agent": USER_AGENT},
        timeout=10,
    )
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


def poll(base: str, device_code: str) -> requests.Response:
    return requests.post(
        f"{base}/oauth/token",
        data={"grant_type": "urn:ietf:params:oauth:grant-type:device_code", "device_code": device_code},
        headers={"User-Agent": USER_AGENT},
        timeout=10,
    )


def refresh(base: str, refresh_token: str) -> requests.Response:
    return requests.post(
        f"{base}/oauth/token",
        data={"grant_type": "refresh_token", "refresh_token": refresh_token},
        headers={"User-Agent": USER_AGENT},
        timeout=30,
    )


def csrf_token(page: str) -> str:
    found = re.search(r'name="csrf_token" value="([^"]+)"', page)
    assert found, "the verification page has no CSRF token"
    return found.group(1)


def open_page(browser: requests.Session, url: str) -> requests.Response:
    page = browser.get(url, timeout=10)
    assert page.status_code == 200, page.text
    return page


def submit_code(
    browser: requests.Session, base: str, user_code: str, action: str = "approve", csrf: str | None = None
) -> requests.Response:
    """POST the confirm form as a browser does (Origin + Sec-Fetch-Site); redirects not followed."""
    if csrf is None:
        csrf = csrf_token(open_page(browser, f"{base}/device").text)
    return browser.post(
        f"{base}/device",
        data={"user_code": user_code, "csrf_token": csrf, "action": action},
        headers={"Origin": origin_of(base), "Sec-Fetch-Site": "same-origin"},
        allow_redirects=False,
        timeout=10,
    )


def approve(verification_uri_complete: str, browser: requests.Session | None = None) -> requests.Response:
    """The whole browser part: open the page, confirm the pre-filled code, IdP, callback. Returns the final page."""
    browser = browser or requests.Session()
    base = origin_of(verification_uri_complete)
    page = open_page(browser, verification_uri_complete)
    prefilled = re.search(r'name="user_code" value="([^"]*)"', page.text)
    assert prefilled and prefilled.group(1), "the code is not pre-filled"
    confirm = submit_code(browser, base, prefilled.group(1), "approve", csrf_token(page.text))
    assert confirm.status_code == 303, confirm.text
    # The IdP (oauth2-mock-server) redirects straight back to our callback.
    return browser.get(confirm.headers["Location"], timeout=30)


def wait_for_tokens(base: str, device_code: str, interval: float, timeout: float = 30) -> requests.Response:
    deadline = time.monotonic() + timeout
    while True:
        response = poll(base, device_code)
        if response.status_code == 200 or time.monotonic() > deadline:
            return response
        error = response.json().get("error")
        assert error in ("authorization_pending", "slow_down"), response.text
        time.sleep(interval + (5 if error == "slow_down" else 0))
