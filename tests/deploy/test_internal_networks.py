"""gatewayInternalNetworks: Claude Code's own rules, reproduced, and what `onboard` emits with them.

Why reproduced and not asked of the CLI: the rules are the settings check and connect-time
check of the Claude Code 2.1.333 binary (function text quoted in docs/deploy.md, "External
mode"); these tests pin each rule to the client's message, so a change of ours that drifts from
the client fails here. The real CLI cannot be asked offline: its check runs at /login against a
public address, which no loopback test has.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from gateway import internal_networks, onboard
from gateway.internal_networks import NetworksError, narrowest_block, validate

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize(
    ("entries", "normalised"),
    [
        (["81.2.69.0/24"], ["81.2.69.0/24"]),
        ([" 81.2.69.7/32 "], ["81.2.69.7/32"]),
        (["34.0.0.0/8"], ["34.0.0.0/8"]),  # /8 is the widest the client takes
        (["81.2.69.0/24", "81.2.69.0/24"], ["81.2.69.0/24"]),  # duplicates count once
        (["81.2.69.0/24", "81.2.70.0/24", "34.1.0.0/16", "8.8.8.0/24"], None),  # 4 disjoint: the limit
        (["240.0.0.0/8"], ["240.0.0.0/8"]),  # the client's reserved list has no 240.0.0.0/4: accepted
    ],
)
def test_blocks_the_client_accepts(entries: list[str], normalised: list[str] | None) -> None:
    assert validate(entries) == (normalised or entries)


@pytest.mark.parametrize(
    ("entries", "reason"),
    [
        ("81.2.69.0/24", "is not a list of CIDR strings"),
        ([24], "is not a list of CIDR strings"),
        (["81.2.69.1/24"], 'entry "81.2.69.1/24" is not an IPv4 block written as first-address/prefix, /8 to /32'),
        (["81.2.69.0"], "is not an IPv4 block written as first-address/prefix"),
        (["34.0.0.0/7"], "is not an IPv4 block written as first-address/prefix"),
        (["81.2.69.0/33"], "is not an IPv4 block written as first-address/prefix"),
        (["2001:db8::/32"], "is not an IPv4 block written as first-address/prefix"),
        (["10.0.0.0/8"], "overlaps private address space (10.0.0.0/8), where /login accepts a gateway without"),
        (["172.0.0.0/8"], "overlaps private address space (172.16.0.0/12)"),
        (["192.168.4.0/24"], "overlaps private address space (192.168.0.0/16)"),
        (["127.0.0.1/32"], "overlaps private address space (127.0.0.0/8)"),
        (["169.254.0.0/16"], "overlaps private address space (169.254.0.0/16)"),
        (["100.64.0.0/10"], "overlaps private address space (100.64.0.0/10)"),
        (["203.0.113.0/24"], "overlaps 203.0.113.0/24, a documentation example range that is no one's network"),
        (["198.51.100.0/24"], "a documentation example range"),
        (["192.0.2.0/24"], "a documentation example range"),
        (["198.18.0.0/15"], "overlaps 198.18.0.0/15, which VPN and NAT64 clients use locally"),
        (["192.0.0.0/24"], "overlaps 192.0.0.0/24, which VPN and NAT64 clients use locally"),
        (["0.0.0.0/8"], "overlaps 0.0.0.0/8, reserved address space no network is numbered from"),
        (["192.88.99.0/24"], "overlaps 192.88.99.0/24, reserved address space"),
        (["239.0.0.0/8"], "overlaps 224.0.0.0/4, reserved address space"),
        (["224.0.0.0/4"], "is not an IPv4 block written as first-address/prefix"),
        (["81.0.0.0/8", "81.2.69.0/24"], 'entries "81.0.0.0/8" and "81.2.69.0/24" overlap; list disjoint blocks'),
        (["1.0.0.0/8", "2.0.0.0/8", "3.0.0.0/8", "4.0.0.0/8", "5.0.0.0/8"], "lists 5 blocks; at most 4 are accepted"),
    ],
)
def test_blocks_the_client_refuses_with_its_reason(entries: object, reason: str) -> None:
    with pytest.raises(NetworksError) as caught:
        validate(entries)
    assert str(caught.value).startswith("gatewayInternalNetworks in managed settings ")
    assert reason in str(caught.value)


def test_narrowest_block() -> None:
    assert narrowest_block(["34.117.5.9"]) == "34.117.5.9/32"
    assert narrowest_block(["81.2.69.140"], ["81.2.69.0/25"]) == "81.2.69.0/24"
    assert narrowest_block(["81.2.70.10"], ["81.2.69.0/24"]) == "81.2.68.0/22"
    assert narrowest_block(["34.117.5.9"], ["81.2.69.0/24"]) == "0.0.0.0/1"


def test_external_networks_covers_gateway_and_developers_and_passes_the_client_rules() -> None:
    (block,) = onboard.external_networks(["81.2.70.10"], ["81.2.69.0/24"])
    assert block == "81.2.68.0/22"
    assert internal_networks.inside("81.2.70.10", [block]) and internal_networks.inside("81.2.69.200", [block])
    assert validate([block]) == [block]


@pytest.mark.parametrize(
    ("addresses", "developers", "reason"),
    [
        (["34.117.5.9"], [], "Pass --developer-network CIDR"),
        (["10.40.0.5"], ["81.2.69.0/24"], "is a private address: Claude Code's /login accepts it without"),
        (["34.117.5.9"], ["192.168.1.0/24"], "is private address space"),
        (["34.117.5.9"], ["81.2.69.0/24"], "The narrowest block holding the gateway"),
        (["not-an-ip"], ["81.2.69.0/24"], "is not an IPv4 address"),
        (["81.2.70.10"], ["81.2.69"], "is not an IPv4 CIDR block"),
    ],
)
def test_external_networks_errors_name_cause_and_fix(addresses: list[str], developers: list[str], reason: str) -> None:
    with pytest.raises(onboard.OnboardError) as caught:
        onboard.external_networks(addresses, developers)
    assert reason in str(caught.value)


def _onboard(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "gateway", "onboard", *args], cwd=ROOT, capture_output=True, text=True, timeout=60
    )


def _tf_output(path: Path, external_ip: str | None) -> Path:
    # The shape of `terraform output -json` (name -> {sensitive, type, value}).
    doc = {
        "gateway_url": {"sensitive": False, "type": "string", "value": "https://claude-gw.corp.example.com"},
        "external_ip": {"sensitive": False, "type": "string", "value": external_ip},
        "load_balancer_ip": {"sensitive": False, "type": "string", "value": external_ip or "10.40.0.5"},
    }
    path.write_text(json.dumps(doc), encoding="utf-8")
    return path


def test_onboard_reads_terraform_output_for_an_external_gateway(tmp_path: Path) -> None:
    out = _tf_output(tmp_path / "tf.json", "81.2.70.10")
    result = _onboard("--terraform-output", str(out), "--developer-network", "81.2.69.0/24")
    assert result.returncode == 0, result.stderr
    settings = json.loads(result.stdout)
    assert settings == {
        "forceLoginMethod": "gateway",
        "forceLoginGatewayUrl": "https://claude-gw.corp.example.com",
        "gatewayInternalNetworks": ["81.2.68.0/22"],
    }
    assert "NO_PROXY" in result.stderr and "claude-gw.corp.example.com" in result.stderr


def test_onboard_internal_terraform_output_emits_no_networks(tmp_path: Path) -> None:
    result = _onboard("--terraform-output", str(_tf_output(tmp_path / "tf.json", None)))
    assert result.returncode == 0, result.stderr
    assert "gatewayInternalNetworks" not in json.loads(result.stdout)


def test_onboard_gateway_address_alone_is_refused_with_the_fix(tmp_path: Path) -> None:
    result = _onboard("--url", "https://claude-gw.corp.example.com", "--gateway-address", "34.117.5.9")
    assert result.returncode == 2 and result.stdout == ""
    assert "outside it" in result.stderr and "--developer-network" in result.stderr


def test_onboard_refuses_a_stale_or_broken_terraform_output(tmp_path: Path) -> None:
    stale = tmp_path / "old.json"
    stale.write_text(json.dumps({"gateway_url": {"value": "https://gw.example.com"}}), encoding="utf-8")
    result = _onboard("--terraform-output", str(stale))
    assert result.returncode == 2 and "no external_ip output" in result.stderr
    broken = tmp_path / "broken.json"
    broken.write_text("Outputs:\n\ngateway_url = ...", encoding="utf-8")
    result = _onboard("--terraform-output", str(broken))
    assert result.returncode == 2 and "terraform output -json" in result.stderr
