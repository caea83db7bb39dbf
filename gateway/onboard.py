"""Developer onboarding: the managed settings that send Claude Code to the gateway.

`managed_settings(url)` is what goes into `managed-settings.json` on developer
machines (Linux `/etc/claude-code/managed-settings.json`, Windows
`C:\\Program Files\\ClaudeCode\\managed-settings.json`) or into a macOS
configuration profile for the preference domain `com.anthropic.claudecode`
(`mobileconfig(url)`); see docs/deploy.md.

An external (public-address) gateway also needs `gatewayInternalNetworks`
(`external_networks()`, the client's rules in gateway/internal_networks.py).
"""

from __future__ import annotations

import ipaddress
import json
import plistlib
import uuid
from collections.abc import Sequence
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from common.config import is_loopback_url
from gateway import internal_networks

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


def managed_settings(url: str, networks: Sequence[str] = ()) -> dict[str, Any]:
    settings: dict[str, Any] = {"forceLoginMethod": "gateway", "forceLoginGatewayUrl": gateway_origin(url)}
    if networks:
        settings["gatewayInternalNetworks"] = internal_networks.validate(list(networks))
    return settings


def settings_json(url: str, networks: Sequence[str] = ()) -> str:
    return json.dumps(managed_settings(url, networks), indent=2) + "\n"


def external_networks(gateway_addresses: Sequence[str], developer_networks: Sequence[str]) -> list[str]:
    """gatewayInternalNetworks for a gateway on public address(es): the narrowest one block that
    holds them and the developer networks, checked with Claude Code's own rules.

    Claude Code accepts a listed block only when the gateway's address AND the developer
    machine's own address on the connection are both inside it (direct connection, no proxy),
    so the developer networks are required: a block of the gateway address alone is refused.
    """
    for address in gateway_addresses:
        try:
            ip = ipaddress.IPv4Address(address)
        except ValueError:
            raise OnboardError(
                f"--gateway-address {address!r} is not an IPv4 address: gatewayInternalNetworks holds IPv4 blocks only "
                "(the Terraform global address is IPv4: `terraform output external_ip`)"
            ) from None
        if internal_networks.is_private(str(ip)):
            raise OnboardError(
                f"--gateway-address {address} is a private address: Claude Code's /login accepts it without "
                "gatewayInternalNetworks (internal mode); leave out --gateway-address / --terraform-output"
            )
    if not developer_networks:
        raise OnboardError(
            f"gatewayInternalNetworks must also hold the developer machines' own addresses: Claude Code signs in to "
            f"a gateway inside a listed block only when the machine connects from inside the same block (otherwise "
            f"'this machine is connecting from ..., outside it'), so a block of {', '.join(gateway_addresses)} alone "
            "would refuse everyone. Pass --developer-network CIDR: the public block your developer machines are "
            "numbered from (their own interface addresses, not a NAT or VPN egress). If they sit on private "
            "addresses behind NAT, an external gateway cannot be signed in to: use the internal load balancer "
            "(terraform internal = true) over VPN or Interconnect (docs/deploy.md)"
        )
    for network in developer_networks:
        try:
            net = ipaddress.IPv4Network(network.strip(), strict=False)
        except ValueError:
            raise OnboardError(
                f"--developer-network {network!r} is not an IPv4 CIDR block such as 81.2.69.0/24"
            ) from None
        if internal_networks.is_private(str(net.network_address)) or internal_networks.is_private(
            str(net.broadcast_address)
        ):
            raise OnboardError(
                f"--developer-network {network} is private address space: machines there cannot sign in to a public "
                "gateway (Claude Code checks the machine's own address); use the internal load balancer instead"
            )
    block = internal_networks.narrowest_block(list(gateway_addresses), list(developer_networks))
    try:
        return internal_networks.validate([block])
    except internal_networks.NetworksError as exc:
        raise OnboardError(
            f"{exc} The narrowest block holding the gateway ({', '.join(gateway_addresses)}) and the developer "
            f"networks ({', '.join(developer_networks)}) is {block}, which Claude Code refuses. Give the load balancer "
            "an address from your own public block (terraform external_ip_address, with that block brought to "
            "Google Cloud), or use the internal load balancer (internal = true) over VPN"
        ) from None


def read_terraform_output(path: str) -> tuple[str, str | None]:
    """(gateway_url, external_ip or None) from `terraform output -json > FILE`."""
    try:
        doc = json.loads(Path(path).read_text(encoding="utf-8"))
    except OSError as exc:
        raise OnboardError(f"--terraform-output {path}: cannot read it ({exc.strerror})") from None
    except json.JSONDecodeError as exc:
        raise OnboardError(
            f"--terraform-output {path} is not JSON ({exc.msg}): write it with `terraform output -json > {path}`"
        ) from None

    def value(name: str) -> Any:
        entry = doc.get(name) if isinstance(doc, dict) else None
        return entry.get("value") if isinstance(entry, dict) else None

    url = value("gateway_url")
    if not isinstance(url, str):
        raise OnboardError(
            f"--terraform-output {path} has no gateway_url output: write it with `terraform output -json` in terraform/"
        )
    if "external_ip" not in doc:
        raise OnboardError(
            f"--terraform-output {path} has no external_ip output: it predates this version of terraform/; "
            "run `terraform apply` (or `terraform refresh`) and write it again"
        )
    ip = value("external_ip")
    return url, ip if isinstance(ip, str) and ip else None


def mobileconfig(url: str, organization: str = "Claude apps gateway", networks: Sequence[str] = ()) -> bytes:
    """A macOS configuration profile setting the managed preferences of Claude Code."""
    settings = managed_settings(url, networks)
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
