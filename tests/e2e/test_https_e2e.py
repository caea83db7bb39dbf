"""End to end over https: the REAL Claude Code CLI, the gateway behind TLS, the certificate pinned.

The gateway runs as in test_claude_code_e2e.py, behind a TLS front (tls_front.TlsFront: the load
balancer's part) whose leaf comes from a test CA made for the run; the CLI trusts that CA through
NODE_EXTRA_CA_CERTS, and reaches the gateway by a host name that /etc/hosts maps to 127.0.0.1
(private, so /login accepts it). The module signs in once, checks the trust screen's fingerprint
against `python -m gateway fingerprint`, streams a request, then rotates the leaf (same CA, new
key) and checks what a developer sees: calls refused on the pin, `/login` saying the certificate
changed, and everything working again once the new fingerprint is trusted. See docs/e2e.md.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import claude_code as cc
import pytest
import stack as gateway_stack
import tls_front

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

# A name of the reserved private-use `.internal` top-level domain: never a real host.
HOST = "claude-gw.e2e.internal"
CHANGED = "The TLS certificate for this gateway has changed since you last connected"


def fingerprint_of(url: str) -> str:
    """What an operator is told to announce: `python -m gateway fingerprint --url URL`, first line."""
    done = subprocess.run(
        [sys.executable, "-m", "gateway", "fingerprint", "--url", url],
        cwd=gateway_stack.ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    return done.stdout.splitlines()[0]


def shown_fingerprint(screen: str) -> str:
    found = re.search(r"Certificate fingerprint \(SHA-256\):\s*([0-9a-f]{16})", screen)
    assert found, f"no fingerprint on the trust screen:\n{screen}"
    return found.group(1)


@pytest.fixture(scope="module")
def gateway(claude: Path, pg: Any, tmp_path_factory: pytest.TempPathFactory) -> Iterator[gateway_stack.Stack]:
    cc.require(tls_front.hosts_writable(), "/etc/hosts is not writable (the https run maps its host name there)")
    workdir = tmp_path_factory.mktemp("e2e-https")
    with (
        cc.e2e_lock(),
        tls_front.HostsEntry(HOST),
        cc.ManagedSettings() as managed,
        gateway_stack.stack(pg.create_database(), workdir, https_host=HOST) as running,
    ):
        assert tls_front.resolves_only_to(HOST), f"{HOST} does not resolve to 127.0.0.1 after editing /etc/hosts"
        managed.write(cc.managed_settings_for(running.url))
        running.managed = managed
        yield running


def test_https_sign_in_pins_the_certificate_and_rotation_asks_for_login(
    claude: Path, gateway: gateway_stack.Stack, tmp_path: Path
) -> None:
    assert gateway.ca is not None and gateway.front is not None
    machine, ca = cc.Machine.trusting(gateway.ca.path, HOST), str(gateway.ca.path)
    first = gateway.front.leaf
    announced = fingerprint_of(gateway.url)
    assert announced == first.pinned  # the command reads what the front presents

    # --- the first sign-in over https: the trust screen shows the certificate's fingerprint
    tmux = cc.Tmux()
    try:
        result = cc.sign_in(
            claude, gateway.url, tmp_path / "home", tmp_path / "project", tmux, machine=machine, verify=ca
        )
    except AssertionError as exc:
        raise cc.sign_in_failure(exc, claude, tmp_path / "home", machine, gateway.server_tail()) from None
    finally:
        tmux.stop()
    assert "trust_gateway" in result.screens, result.screens
    assert shown_fingerprint(result.trust_screen) == announced[:16], result.trust_screen
    assert CHANGED not in result.trust_screen
    creds = result.credentials()
    assert creds["enterpriseGateway"]["url"] == gateway.url
    assert creds["gatewayTrust"] == {HOST: announced}, creds["gatewayTrust"]

    # A request streams through TLS to the stand-in.
    mark = gateway.mark()
    done = cc.run_print(claude, result.home, result.workdir, "hi", machine=machine)
    calls = gateway.since(mark)
    assert done.returncode == 0, cc.answer_of(done) + f"\ngateway: {calls}\n{gateway.server_tail()}"
    assert gateway_stack.REPLY.strip() in done.stdout, cc.answer_of(done)
    inference = [r for r in calls if r["path"] == "/v1/messages" and r["method"] == "POST"]
    assert inference and all(r["status"] == 200 and r["stream"] is True for r in inference), calls

    # --- the operator rotates the certificate: same CA, new key (a renewal looks the same)
    second = gateway.ca.issue(HOST)
    assert second.pinned != first.pinned
    gateway.front.rotate(second)
    rotated = fingerprint_of(gateway.url)
    assert rotated == second.pinned

    # The CLI connects, sees a leaf other than the pinned one and sends nothing over it.
    mark, handshakes = gateway.mark(), len(gateway.front.handshakes)
    done = cc.run_print(claude, result.home, result.workdir, "hi", machine=machine)
    assert done.returncode != 0, cc.answer_of(done)
    assert "Not signed in to the Cloud gateway — run /login." in done.stdout, cc.answer_of(done)
    # (TLS 1.3: the client checks the leaf before it finishes the handshake, so it never completes)
    refused = gateway.front.handshakes[handshakes:]
    assert refused and {(h.pinned, h.completed) for h in refused} == {(second.pinned, False)}, refused
    assert gateway.since(mark) == [], gateway.since(mark)

    # Started interactively it says why, and `/login` shows the trust screen again: the certificate
    # changed, with the new fingerprint; the whole sign-in follows.
    tmux = cc.Tmux()
    try:
        again = cc.sign_in(
            claude,
            gateway.url,
            result.home,
            result.workdir,
            tmux,
            machine=machine,
            verify=ca,
            again=True,
        )
    except AssertionError as exc:
        raise cc.sign_in_failure(exc, claude, result.home, machine, gateway.server_tail()) from None
    finally:
        history = list(tmux.history)
        tmux.stop()
    notice = f"Cloud gateway {HOST} TLS certificate changed since you connected — run /login to verify and reconnect."
    assert any(notice in screen for screen in history), history[:2]
    assert CHANGED in again.trust_screen, again.trust_screen
    assert shown_fingerprint(again.trust_screen) == rotated[:16], again.trust_screen
    assert {"connect", "trust_gateway", "code", "account"} <= set(again.screens), again.screens
    assert again.credentials()["gatewayTrust"] == {HOST: rotated}

    # Trusted again: requests stream through the rotated certificate.
    mark = gateway.mark()
    done = cc.run_print(claude, result.home, result.workdir, "hi", machine=machine)
    calls = gateway.since(mark)
    assert done.returncode == 0, cc.answer_of(done) + f"\ngateway: {calls}"
    assert gateway_stack.REPLY.strip() in done.stdout, cc.answer_of(done)
    assert [r["status"] for r in calls if r["path"] == "/v1/messages" and r["method"] == "POST"] == [200], calls
    seconds = {"first": result.seconds, "again": again.seconds}
    print(
        f"https e2e timings (s): {json.dumps({k: {n: round(v, 1) for n, v in t.items()} for k, t in seconds.items()})}"
    )
