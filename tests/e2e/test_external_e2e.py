"""End to end, the external path: a gateway on a public address, the REAL CLI on the same public block.

A network namespace plays the developer machine (netns.PublicLink): its own address and the
gateway's are both in 81.2.69.0/24, a public block (not private, documentation or reserved), so
`/login` treats the gateway as public. Without `gatewayInternalNetworks` the CLI refuses to sign
in; with the managed settings `python -m gateway onboard --terraform-output` writes (the load
balancer's external_ip from Terraform, the developers' block) it signs in and requests stream.
Skipped without `ip` or namespaces, failed under CI=true. See docs/e2e.md.
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import claude_code as cc
import netns
import pytest
import stack as gateway_stack
import tls_front

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

HOST = "claude-gw-ext.e2e.internal"
BLOCK = "81.2.69.0/24"
GATEWAY_IP, DEVELOPER_IP = "81.2.69.1", "81.2.69.2"


@pytest.fixture(scope="module")
def external(
    claude: Path, pg: Any, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[gateway_stack.Stack, netns.PublicLink]]:
    """The gateway behind TLS on GATEWAY_IP, and the developer machine's namespace linked to it."""
    why = netns.available()
    cc.require(why is None, f"no network namespace for the external path: {why}")
    cc.require(tls_front.hosts_writable(), "/etc/hosts is not writable (the external run maps its host name there)")
    workdir = tmp_path_factory.mktemp("e2e-external")
    with (
        cc.e2e_lock(),
        tls_front.HostsEntry(HOST, GATEWAY_IP),
        netns.PublicLink("claude-e2e-ext", GATEWAY_IP, DEVELOPER_IP) as link,
        cc.ManagedSettings() as managed,
        gateway_stack.stack(pg.create_database(), workdir, https_host=HOST, front_address=GATEWAY_IP) as running,
    ):
        assert tls_front.resolves_only_to(HOST, GATEWAY_IP)
        running.managed = managed
        yield running, link


def onboard_from_terraform(gateway: gateway_stack.Stack, directory: Path) -> str:
    """What the operator runs: `terraform output -json` saved, then onboard reads it."""
    output = directory / "tf-output.json"
    output.write_text(
        json.dumps({"gateway_url": {"value": gateway.url}, "external_ip": {"value": GATEWAY_IP}}), encoding="utf-8"
    )
    made = subprocess.run(
        [sys.executable, "-m", "gateway", "onboard", "--terraform-output", str(output), "--developer-network", BLOCK],
        cwd=gateway_stack.ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert made.returncode == 0, made.stderr
    return made.stdout


def test_public_gateway_refused_without_internal_networks(
    claude: Path, external: tuple[gateway_stack.Stack, netns.PublicLink], tmp_path: Path
) -> None:
    gateway, link = external
    gateway.managed.write(cc.managed_settings_for(gateway.url))
    assert gateway.ca is not None
    machine = cc.Machine.trusting(gateway.ca.path, HOST, tuple(link.wrap([])))
    tmux = cc.Tmux()
    mark = gateway.mark()
    try:
        (tmp_path / "home").mkdir()
        tmux.start(machine.command(claude), tmp_path, cc.environment(tmp_path / "home", machine.env))
        tmux.wait_for("Choose the text style", 30)
        tmux.send("Enter")
        tmux.wait_for("Enter to connect", 15, what="the Cloud gateway screen")
        tmux.send("Enter")
        screen = tmux.wait_for("private network", 20, what="the refusal of a public gateway")
    finally:
        tmux.stop()
    flat = " ".join(screen.split())
    assert (
        f"Gateway hosts must be on your organization's private network; {HOST} resolves to the public "
        f"(or unrecognized) address {GATEWAY_IP}. Connect to your organization's network and try again."
    ) in flat, screen
    assert "Trust gateway" not in screen
    assert gateway.since(mark) == [], gateway.since(mark)  # refused before any call to the gateway


def test_onboarding_output_with_internal_networks_signs_in(
    claude: Path, external: tuple[gateway_stack.Stack, netns.PublicLink], tmp_path: Path
) -> None:
    gateway, link = external
    text = onboard_from_terraform(gateway, tmp_path)
    settings = json.loads(text)
    assert settings == {
        "forceLoginMethod": "gateway",
        "forceLoginGatewayUrl": gateway.url,
        "gatewayInternalNetworks": [BLOCK],
    }
    gateway.managed.write(text)  # byte for byte what an MDM would install
    assert gateway.ca is not None and gateway.front is not None
    machine = cc.Machine.trusting(gateway.ca.path, HOST, tuple(link.wrap([])))
    tmux = cc.Tmux()
    try:
        result = cc.sign_in(
            claude,
            gateway.url,
            tmp_path / "home",
            tmp_path / "project",
            tmux,
            machine=machine,
            verify=str(gateway.ca.path),
        )
    except AssertionError as exc:
        raise cc.sign_in_failure(exc, claude, tmp_path / "home", machine, gateway.server_tail()) from None
    finally:
        tmux.stop()
    assert {"connect", "trust_gateway", "code", "account"} <= set(result.screens), result.screens
    creds = result.credentials()
    assert creds["enterpriseGateway"]["url"] == gateway.url
    assert creds["gatewayTrust"] == {HOST: gateway.front.leaf.pinned}

    mark, handshakes = gateway.mark(), len(gateway.front.handshakes)
    done = cc.run_print(claude, result.home, result.workdir, "hi", machine=machine)
    calls = gateway.since(mark)
    # The CLI connected from the developer machine's own public address, inside the block.
    peers = {h.peer for h in gateway.front.handshakes[handshakes:]}
    assert peers == {DEVELOPER_IP}, peers
    assert done.returncode == 0, cc.answer_of(done) + f"\ngateway: {calls}\n{gateway.server_tail()}"
    assert gateway_stack.REPLY.strip() in done.stdout, cc.answer_of(done)
    inference = [r for r in calls if r["path"] == "/v1/messages" and r["method"] == "POST"]
    assert inference and all(r["status"] == 200 and r["stream"] is True for r in inference), calls
