"""The e2e harness's own rules, checked without the CLI: skip vs fail, settings restore, form reading."""

from __future__ import annotations

import json
import shutil
import time
from pathlib import Path

import claude_code as cc
import pytest
from _pytest.outcomes import Failed, Skipped


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
