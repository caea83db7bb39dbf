"""The e2e harness's own rules, checked without the CLI: skip vs fail, settings and hosts restore, form
reading, the TLS front."""

from __future__ import annotations

import json
import shutil
import socket
import ssl
import threading
import time
from pathlib import Path

import claude_code as cc
import netns
import pytest
import tls_front
from _pytest.outcomes import Failed, Skipped

from gateway import fingerprint


def test_missing_prerequisite_skips_plainly(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("CI", raising=False)
    with pytest.raises(Skipped, match="e2e skipped: tmux is missing"):
        cc.require(False, "tmux is missing")
    cc.require(True, "never raised")


def test_missing_prerequisite_fails_under_ci(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CI", "true")
    with pytest.raises(Failed, match="prerequisite missing under CI: tmux is missing"):
        cc.require(False, "tmux is missing")


def test_not_root_skips_or_fails_under_ci(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(cc.os, "geteuid", lambda: 1000)
    monkeypatch.delenv("CI", raising=False)
    with pytest.raises(Skipped, match="not root"):
        cc.prerequisites()
    monkeypatch.setenv("CI", "true")
    with pytest.raises(Failed, match="not root"):
        cc.prerequisites()


def test_managed_settings_restores_an_existing_file(tmp_path: Path) -> None:
    path = tmp_path / "claude-code" / "managed-settings.json"
    path.parent.mkdir()
    path.write_text('{"mine": true}')
    with cc.ManagedSettings(path) as managed:
        managed.write({"forceLoginMethod": "gateway"})
        assert json.loads(path.read_text()) == {"forceLoginMethod": "gateway"}
    assert path.read_text() == '{"mine": true}'
    assert sorted(p.name for p in path.parent.iterdir()) == ["managed-settings.json"]


def test_managed_settings_removes_what_it_created(tmp_path: Path) -> None:
    path = tmp_path / "claude-code" / "managed-settings.json"
    with cc.ManagedSettings(path) as managed:
        managed.write({"forceLoginMethod": "gateway"})
        assert path.exists()
    assert not path.parent.exists()


def test_managed_settings_recovers_after_a_crashed_run(tmp_path: Path) -> None:
    path = tmp_path / "managed-settings.json"
    path.write_text('{"original": 1}')
    crashed = cc.ManagedSettings(path)
    crashed.__enter__()
    crashed.write({"left": "behind"})
    # The run died here: the next run puts the original back first, and again at its end.
    with cc.ManagedSettings(path) as managed:
        assert path.read_text() == '{"original": 1}'
        managed.write({"second": "run"})
    assert path.read_text() == '{"original": 1}'


def test_forms_are_read_like_a_browser_does() -> None:
    page = (
        '<form method="post" action="/device"><input type="hidden" name="csrf_token" value="t0k">'
        '<input type="text" name="user_code" value="ABCD-EFGH">'
        '<button name="action" value="approve">Approve</button><button name="action" value="deny">Deny</button></form>'
    )
    parser = cc._Forms()
    parser.feed(page)
    assert parser.forms == [
        {
            "action": "/device",
            "method": "post",
            "fields": {"csrf_token": "t0k", "user_code": "ABCD-EFGH"},
            "buttons": [("action", "approve"), ("action", "deny")],
        }
    ]


def test_tmux_wait_reports_the_last_screen(tmp_path: Path) -> None:
    cc.require(shutil.which("tmux") is not None, "tmux is not installed")
    tmux = cc.Tmux(width=80, height=10)
    try:
        tmux.start(["sh", "-c", "echo screen-text-here; sleep 30"], tmp_path, cc.environment(tmp_path))
        assert "screen-text-here" in tmux.wait_for("screen-text", 10)
        started = time.monotonic()
        with pytest.raises(cc.ScreenTimeout, match=r"(?s)never-shown.*Last screen:.*screen-text-here"):
            tmux.wait_for("never-shown", 0.5)
        assert time.monotonic() - started < 5
    finally:
        tmux.stop()


def test_hosts_entry_is_added_and_the_file_restored_also_after_a_crash(tmp_path: Path) -> None:
    hosts = tmp_path / "hosts"
    hosts.write_text("127.0.0.1 localhost")  # no final newline: the entry still goes on a line of its own
    with tls_front.HostsEntry("gw.e2e.internal", "81.2.69.1", hosts):
        assert hosts.read_text().splitlines() == ["127.0.0.1 localhost", "81.2.69.1 gw.e2e.internal  # claude-code-e2e"]
    assert hosts.read_text() == "127.0.0.1 localhost"
    crashed = tls_front.HostsEntry("gw.e2e.internal", path=hosts)
    crashed.__enter__()  # the run died here
    with tls_front.HostsEntry("gw.e2e.internal", path=hosts):
        assert hosts.read_text().count("gw.e2e.internal") == 1
    assert hosts.read_text() == "127.0.0.1 localhost"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["hosts"]


def _tls_get(port: int, host: str, ca: Path | None) -> tuple[str, bytes]:
    """One request through the front as a verifying client: (the leaf's pinned form, the answer)."""
    context = ssl.create_default_context(cafile=str(ca) if ca else None)
    with (
        socket.create_connection(("127.0.0.1", port), timeout=10) as raw,
        context.wrap_socket(raw, server_hostname=host) as tls,
    ):
        der = tls.getpeercert(binary_form=True)
        tls.sendall(f"GET / HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n".encode())
        answer = b""
        while chunk := tls.recv(65536):
            answer += chunk
    assert der is not None
    return fingerprint.of_der(der), answer


def test_tls_front_relays_bytes_and_rotation_changes_the_leaf(tmp_path: Path) -> None:
    seen: list[bytes] = []
    backend = socket.create_server(("127.0.0.1", 0))

    def answer() -> None:  # a plain-http backend: echoes the request head in the body
        for _ in range(2):
            conn, _ = backend.accept()
            with conn:
                head = conn.recv(65536)
                seen.append(head)
                conn.sendall(
                    b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\nConnection: close\r\n\r\n%s" % (len(head), head)
                )

    thread = threading.Thread(target=answer, daemon=True)
    thread.start()
    ca = tls_front.TestCA(tmp_path / "tls")
    first = ca.issue("gw.e2e.internal")
    front = tls_front.TlsFront(backend.getsockname()[1], first)
    try:
        pinned, reply = _tls_get(front.port, "gw.e2e.internal", ca.path)
        assert pinned == first.pinned
        assert reply.startswith(b"HTTP/1.1 200 OK") and reply.endswith(seen[0])
        assert seen[0].startswith(b"GET / HTTP/1.1\r\nHost: gw.e2e.internal\r\n")  # not a byte changed
        second = ca.issue("gw.e2e.internal")
        front.rotate(second)
        assert _tls_get(front.port, "gw.e2e.internal", ca.path)[0] == second.pinned != first.pinned
        assert [(h.pinned, h.completed, h.peer) for h in front.handshakes] == [
            (first.pinned, True, "127.0.0.1"),
            (second.pinned, True, "127.0.0.1"),
        ]
        # A client that does not trust the CA (the system store only) is refused at the handshake.
        with pytest.raises(ssl.SSLCertVerificationError):
            _tls_get(front.port, "gw.e2e.internal", None)
    finally:
        front.close()
        backend.close()
        thread.join(timeout=5)
    # Closed means closed: a listener left behind would answer a later front's clients with this CA.
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection(("127.0.0.1", front.port), timeout=5).close()


def test_no_network_namespace_is_a_stated_reason(monkeypatch: pytest.MonkeyPatch) -> None:
    # The external module skips (fails under CI=true) with this reason rather than erroring.
    monkeypatch.setattr(netns.shutil, "which", lambda name: None)
    assert netns.available() == "the `ip` command (iproute2) is not installed"
