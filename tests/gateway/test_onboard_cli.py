"""The real Claude Code CLI accepts `python -m gateway onboard`'s output as managed settings.

Written to `/etc/claude-code/managed-settings.json` (the only path the CLI reads
on Linux; root needed), the settings must switch a fresh `claude -p` into the
Cloud gateway mode: it answers "Not signed in to the Cloud gateway" instead of
the default "Not logged in". Runs serialise with the other real-CLI tests on
the machine through the same lock file, and whatever file was there is put back.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from e2e import claude_code as cc

from gateway import onboard


def _print_mode(claude: Path, home: Path) -> str:
    result = cc.run_print(claude, home, home, "hi")
    return result.stdout + result.stderr


def _with_settings(text: str, home: Path) -> str:
    """`claude -p hi` with these machine-wide managed settings (the e2e harness owns the file and its lock)."""
    cc.require(os.name == "posix" and os.geteuid() == 0, "not root (writing /etc/claude-code needs root)")
    claude = cc.ensure_cli()
    home.mkdir()
    with cc.e2e_lock(), cc.ManagedSettings() as managed:
        managed.write(text)
        return _print_mode(claude, home)


@pytest.mark.e2e
def test_claude_code_accepts_the_onboarding_settings(tmp_path: Path) -> None:
    out = _with_settings(onboard.settings_json("https://claude-gw.corp.example.com"), tmp_path / "home")
    assert "Not signed in to the Cloud gateway" in out, out


@pytest.mark.e2e
def test_without_the_settings_the_cli_is_not_in_gateway_mode(tmp_path: Path) -> None:
    """The control: the phrase above comes from the managed settings, not from a fresh HOME."""
    out = _with_settings("{}", tmp_path / "home")
    assert "Cloud gateway" not in out, out
