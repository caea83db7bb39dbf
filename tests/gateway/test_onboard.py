"""`python -m gateway onboard`: the managed settings pushed to developer machines."""

from __future__ import annotations

import json
import plistlib
import subprocess
import sys
from pathlib import Path

import pytest

from gateway import onboard

ROOT = Path(__file__).resolve().parents[2]


def _run(*args: str) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run(
        [sys.executable, "-m", "gateway", "onboard", *args], cwd=ROOT, capture_output=True, timeout=60
    )


def test_prints_managed_settings_json() -> None:
    result = _run("--url", "https://gw.example.com/")
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout) == {
        "forceLoginMethod": "gateway",
        "forceLoginGatewayUrl": "https://gw.example.com",
    }


def test_loopback_http_is_allowed() -> None:
    assert onboard.managed_settings("http://127.0.0.1:8080")["forceLoginGatewayUrl"] == "http://127.0.0.1:8080"


@pytest.mark.parametrize(
    "url", ["http://gw.example.com", "gw.example.com", "https://gw.example.com/v1", "ftp://gw.example.com", ""]
)
def test_refuses_what_claude_code_would_not_accept(url: str) -> None:
    result = _run("--url", url)
    assert result.returncode == 2
    assert result.stdout == b""
    assert b"--url" in result.stderr or b"https" in result.stderr


def test_macos_profile_sets_the_claude_code_preference_domain() -> None:
    result = _run("--url", "https://gw.example.com", "--format", "mobileconfig", "--organization", "Acme")
    assert result.returncode == 0, result.stderr
    profile = plistlib.loads(result.stdout)
    assert profile["PayloadType"] == "Configuration"
    assert profile["PayloadOrganization"] == "Acme"
    (payload,) = profile["PayloadContent"]
    assert payload["PayloadType"] == "com.anthropic.claudecode"
    assert payload["forceLoginMethod"] == "gateway"
    assert payload["forceLoginGatewayUrl"] == "https://gw.example.com"
    # The same gateway gives the same identifiers: re-pushing replaces the profile.
    assert (
        _run("--url", "https://gw.example.com", "--format", "mobileconfig").stdout.count(
            payload["PayloadUUID"].encode()
        )
        == 1
    )
