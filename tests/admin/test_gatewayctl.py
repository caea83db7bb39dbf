"""`python -m gatewayctl` against the live admin API."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from support import ADMIN_READ_KEY, ADMIN_WRITE_KEY, live_gateway
from support.spend import request_info, setup_gateway

from common import config
from common.core.usage import Usage
from common.proxy import metering
from gatewayctl import cli

ROOT = Path(__file__).resolve().parents[2]


def run(capsys: pytest.CaptureFixture[str], url: str, *argv: str, key: str = ADMIN_WRITE_KEY) -> tuple[int, str, str]:
    code = cli.main(["--url", url, "--key", key, *argv])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_limits_usage_explain_audit(tmp_path: Path, database_url: str, capsys: pytest.CaptureFixture[str]) -> None:
    path = setup_gateway(tmp_path, database_url)
    cfg = config.current()
    for email, groups, tokens in (
        ("a@x.com", ("eng",), 2_000_000),
        ("b@x.com", ("eng",), 500_000),
        ("c@x.com", (), 10),
    ):
        ticket = metering.begin(cfg, request_info(email=email, groups=groups))
        metering.finish(cfg, ticket, Usage(input_tokens=tokens), 200)
    with live_gateway(path) as live:
        code, out, _ = run(capsys, live.url, "limits", "set", "--user", "a@x.com", "--daily", "50", "--monthly", "500")
        assert code == 0
        lines = out.splitlines()
        assert lines[0].split() == ["ID", "SCOPE", "PERIOD", "LIMIT", "SPENT", "USED", "RESETS", "(UTC)"]
        assert "user a@x.com" in lines[2] and "daily" in lines[2] and "$50.00" in lines[2] and "$2.00" in lines[2]
        assert "4%" in lines[2]
        code, out, _ = run(capsys, live.url, "limits", "set", "--group", "eng", "--weekly", "100", "--pooled")
        assert code == 0 and "group eng (pooled)" in out
        code, out, _ = run(capsys, live.url, "limits", "list", key=ADMIN_READ_KEY)
        assert code == 0 and len(out.splitlines()) == 5  # header, rule, three limits

        code, out, _ = run(capsys, live.url, "usage", "--group", "eng", "--month", key=ADMIN_READ_KEY)
        assert code == 0
        lines = out.splitlines()
        assert lines[0].startswith("spend ") and lines[0].endswith(", group eng")
        assert lines[1].split() == ["USER", "REQUESTS", "INPUT", "TOK", "OUTPUT", "TOK", "COST"]
        assert lines[3].split()[0] == "a@x.com" and lines[3].split()[-1] == "$2.00"
        assert lines[4].split()[0] == "b@x.com" and lines[4].split()[-1] == "$0.50"
        assert lines[-1] == "total $2.50"

        code, out, _ = run(capsys, live.url, "explain", "a@x.com", "--groups", "eng", key=ADMIN_READ_KEY)
        assert code == 0 and "policy   everyone" in out and "group eng (pooled)" in out

        code, out, _ = run(capsys, live.url, "--json", "limits", "list", key=ADMIN_READ_KEY)
        assert code == 0 and len(json.loads(out)) == 3

        code, out, _ = run(capsys, live.url, "audit", key=ADMIN_READ_KEY)
        assert code == 0 and out.count("spend_limit.create") == 3

        # Errors come back readable, with the API's message; a read key cannot write.
        code, _, err = run(capsys, live.url, "limits", "set", "--org", "--daily", "5", key=ADMIN_READ_KEY)
        assert code == 1 and "HTTP 403" in err and "read-only" in err
        code, _, err = run(capsys, live.url, "limits", "set", "--user", "not-an-email", "--daily", "5")
        assert code == 1 and "scope.user_id" in err
        code, _, err = run(capsys, live.url, "limits", "set", "--org", "--daily", "five")
        assert code == 1 and "not an amount" in err


def test_runs_as_a_module() -> None:
    result = subprocess.run([sys.executable, "-m", "gatewayctl", "--help"], capture_output=True, text=True, cwd=ROOT)
    assert result.returncode == 0 and "limits set --user a@x.com --daily 50" in result.stdout


def test_sessions_list_and_revoke(tmp_path: Path, database_url: str, capsys: pytest.CaptureFixture[str]) -> None:
    from common.db import pool as store

    path = setup_gateway(tmp_path, database_url)
    for sid, email in (("sess_1", "a@x.com"), ("sess_2", "a@x.com"), ("sess_3", "b@x.com")):
        store.get().execute(
            "INSERT INTO auth_sessions (id, sub, email, groups, expires_at) VALUES (%s, %s, %s, '[\"eng\"]', now() + interval '1 day')",
            (sid, email, email),
        )
    with live_gateway(path) as live:
        code, out, _ = run(capsys, live.url, "sessions", "list", key=ADMIN_READ_KEY)
        assert code == 0 and out.splitlines()[0].split() == ["ID", "EMAIL", "GROUPS", "CREATED", "EXPIRES"]
        assert len(out.splitlines()) == 5
        code, out, _ = run(capsys, live.url, "sessions", "revoke", "a@x.com")
        assert code == 0 and out.strip() == "revoked 2 session(s) of a@x.com"
        code, out, _ = run(capsys, live.url, "sessions", "list", key=ADMIN_READ_KEY)
        assert "a@x.com" not in out and "b@x.com" in out
