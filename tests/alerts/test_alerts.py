"""Budget alerts against a real PostgreSQL and a local webhook receiver: once per (cap, period, threshold),
signed, retried, never duplicated by a second instance, and free for callers far from a threshold."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from support.alerts import COST, SECRET, Receiver, burst, receiver
from support.spend import set_limit, setup_gateway

from common.alerts import delivery, engine
from common.db import pool as store

ROOT = Path(__file__).resolve().parents[2]
EMAIL = "burst@example.com"
CAP_DOLLARS = "0.72"  # 120 requests of 6,000 µ$: 200 concurrent requests cross 75, 90 and 100 %


def _config(url: str, extra_destinations: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    return {
        "alerts": {
            "thresholds": [75, 90, 100],
            "backoff_seconds": 0.2,
            "destinations": [
                {"name": "finance", "type": "webhook", "url": url + "/hook", "secret": "${ALERT_SECRET}"},
                *(extra_destinations or []),
            ],
        }
    }


@pytest.fixture(autouse=True)
def _fresh_alert_memory(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.setenv("ALERT_SECRET", SECRET)
    engine.reset()
    yield
    engine.wait_idle(10)
    engine.reset()


def _check_deliveries(hook: Receiver) -> None:
    got = hook.delivered()
    assert sorted(c["json"]["threshold_percent"] for c in got) == [75, 90, 100]
    for call in got:
        assert delivery.verify(SECRET, call["headers"]["X-Gateway-Signature"], call["body"])
        assert not delivery.verify(SECRET + "x", call["headers"]["X-Gateway-Signature"], call["body"])
        body = call["json"]
        assert body["type"] == "budget_alert" and body["scope"] == {"type": "user", "user_id": EMAIL}
        assert body["period"] == "daily" and body["limit"] == {"amount": "72", "currency": "USD"}
        # The spend reported was read after the threshold was crossed, from settled spend only.
        spent_cents = float(body["spend"]["amount"])
        assert spent_cents * 100 >= body["threshold_percent"] * 72
    assert len({c["headers"]["X-Gateway-Alert-Id"] for c in got}) == 3


def test_200_concurrent_requests_fire_each_threshold_once_signed(tmp_path: Path, database_url: str) -> None:
    with receiver() as hook:
        setup_gateway(tmp_path, database_url, _config(hook.url))
        set_limit("user", EMAIL, "daily", CAP_DOLLARS)
        admitted, refused = burst(EMAIL, 200)
        assert engine.wait_idle(60)
        assert admitted >= 120 and refused > 0
        spent = store.get().execute("SELECT sum(cost_micros) FROM spend_usage WHERE user_email = %s", (EMAIL,))[0][0]
        assert spent == admitted * COST >= 720_000
        _check_deliveries(hook)
        assert len(hook.calls) == 3  # no failed attempt, no duplicate
        db = store.get()
        assert db.execute("SELECT count(*) FROM alert_events")[0][0] == 3
        assert db.execute("SELECT status, attempts FROM alert_deliveries ORDER BY event_id") in (
            [["delivered", 1]] * 3,
            [("delivered", 1)] * 3,
        )
        actions = [r[0] for r in db.execute("SELECT action FROM audit_log WHERE action LIKE 'alert.%' ORDER BY id")]
        assert sorted(actions) == ["alert.delivered"] * 3 + ["alert.fired"] * 3

        # More requests the same day fire nothing new (the cap is full: refused, and no threshold is left).
        burst(EMAIL, 20)
        assert engine.wait_idle(30)
        assert len(hook.calls) == 3


def test_a_receiver_failing_twice_gets_each_alert_once_and_slack_gets_text(tmp_path: Path, database_url: str) -> None:
    with receiver(fail_first=2) as hook:
        slack = {"name": "slack", "type": "slack", "url": hook.url + "/slack"}
        setup_gateway(tmp_path, database_url, _config(hook.url, [slack]))
        set_limit("user", EMAIL, "daily", CAP_DOLLARS)
        burst(EMAIL, 200)
        assert engine.wait_idle(90)
        _check_deliveries(hook)
        webhook_calls = [c for c in hook.calls if c["path"] == "/hook"]
        assert len(webhook_calls) == 9 and sum(c["status"] == 500 for c in webhook_calls) == 6
        texts = [c["json"]["text"] for c in hook.delivered("/slack")]
        assert len(texts) == 3 and all(EMAIL in t and "daily spend limit" in t for t in texts)
        rows = store.get().execute("SELECT destination, status, attempts FROM alert_deliveries ORDER BY 1, event_id")
        assert [tuple(r) for r in rows] == [("finance", "delivered", 3)] * 3 + [("slack", "delivered", 3)] * 3


def test_a_second_instance_sends_no_duplicate(tmp_path: Path, database_url: str) -> None:
    with receiver() as hook:
        path = setup_gateway(tmp_path, database_url, _config(hook.url))
        set_limit("user", EMAIL, "daily", CAP_DOLLARS)
        other = subprocess.Popen(
            [sys.executable, str(ROOT / "tests" / "alerts" / "instance.py"), str(path), EMAIL, "100"],
            stdout=subprocess.PIPE,
            text=True,
            env={**os.environ, "ALERT_SECRET": SECRET, "GATEWAY_LOG_LEVEL": "ERROR"},
        )
        mine: list[tuple[int, int]] = []
        worker = threading.Thread(target=lambda: mine.append(burst(EMAIL, 100)))
        worker.start()
        out, _ = other.communicate(timeout=180)
        worker.join(timeout=180)
        assert engine.wait_idle(60)
        theirs = json.loads(out.strip().splitlines()[-1])
        assert theirs["idle"] is True and theirs["admitted"] > 0 and mine[0][0] > 0
        _check_deliveries(hook)
        assert len(hook.calls) == 3
        assert store.get().execute("SELECT count(*) FROM alert_events")[0][0] == 3


def test_callers_far_from_a_threshold_cost_no_evaluation(tmp_path: Path, database_url: str) -> None:
    with receiver() as hook:
        setup_gateway(tmp_path, database_url, _config(hook.url))
        set_limit("user", EMAIL, "daily", "100")  # $100: 20 requests of 0.6 cents are at 0.12 %
        burst(EMAIL, 20, workers=4)
        assert engine.wait_idle(10)
        assert engine.stats()["evaluations"] == 0 and hook.calls == []
