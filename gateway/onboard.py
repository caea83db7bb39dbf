"""Developer onboarding: the managed settings that send Claude Code to the gateway.

`managed_settings(url)` is what goes into `managed-settings.json` on developer
machines (Linux `/etc/claude-code/managed-settings.json`, Windows
`C:\\Program Files\\ClaudeCode\\managed-settings.json`) or into a macOS
configuration profile for the preference domain `com.anthropic.claudecode`
(`mobileconfig(url)`); see docs/deploy.md.
"""

from __future__ import annotations

import json
import plistlib
import uuid
from typing import Any
from urllib.parse import urlsplit

from common.config import is_loopback_url

PREFERENCE_DOMAIN = "com.anthropic.claudecode"


class OnboardError(ValueError):
    pass


def gateway_origin(url: str) -> str:
    """The origin Claude Code is given: https (http only on loopback), no path."""
    parts = urlsplit(url.strip())
    if parts.scheme not in ("https", "http") or not parts.hostname:
        raise OnboardError(f"--url must be an absolute URL such as https://claude-gw.corp.example.com, got {url!r}")
    if parts.scheme == "http" and not is_loopback_url(url):
        raise OnboardError(f"Claude Code accepts plain http only for loopback gateways; use https, got {url!r}")
    if parts.path not in ("", "/") or parts.query or parts.fragment:
        raise OnboardError(f"--url must be the gateway's origin without a path, got {url!r}")
    return f"{parts.scheme}://{parts.netloc}"


def managed_settings(url: str) -> dict[str, Any]:
    return {"forceLoginMethod": "gateway", "forceLoginGatewayUrl": gateway_origin(url)}


def settings_json(url: str) -> str:
    return json.dumps(managed_settings(url), indent=2) + "\n"


def mobileconfig(url: str, organization: str = "Claude apps gateway") -> bytes:
    """A macOS configuration profile setting the managed preferences of Claude Code."""
    settings = managed_settings(url)
    # Stable identifiers per gateway: re-pushing the profile replaces it.
    seed = uuid.uuid5(uuid.NAMESPACE_URL, settings["forceLoginGatewayUrl"])
    payload = {
        "PayloadType": PREFERENCE_DOMAIN,
        "PayloadIdentifier": f"{PREFERENCE_DOMAIN}.gateway",
        "PayloadUUID": str(uuid.uuid5(seed, "payload")).upper(),
        "PayloadVersion": 1,
        "PayloadDisplayName": "Claude Code gateway sign-in",
        **settings,
    }
    profile = {
        "PayloadType": "Configuration",
        "PayloadIdentifier": f"{PREFERENCE_DOMAIN}.profile",
        "PayloadUUID": str(uuid.uuid5(seed, "profile")).upper(),
        "PayloadVersion": 1,
        "PayloadDisplayName": "Claude Code",
        "PayloadOrganization": organization,
        "PayloadScope": "System",
        "PayloadContent": [payload],
    }
    return plistlib.dumps(profile, fmt=plistlib.FMT_XML, sort_keys=True)
