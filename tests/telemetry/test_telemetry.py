"""The gateway's own metrics: identity from the session, OTLP/HTTP to a collector, bounded flushes."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from support import activate, base_config, deep_merge, free_port, write_config
from support.otlp_receiver import data_points, otlp_receiver

from common import config
from common.core.identity import Identity
from common.core.usage import RequestInfo, Usage
from common.proxy import metering
from common.telemetry import emit as telemetry

WHO = Identity(sub="idp|42", email="ada@example.com", groups=("ml-research", "eng"))


@pytest.fixture(autouse=True)
def _fresh_pipeline() -> Iterator[None]:
    telemetry.reset()
    yield
    telemetry.reset()


def _activate(
    tmp_path: Path, database_url: str, collector: str | None, warm: bool = True, **settings: Any
) -> config.Config:
    extra: dict[str, Any] = {"telemetry": {"resource_attributes": {"team": "platform"}, **settings}}
    if collector is not None:
        extra["telemetry"]["collector"] = {"endpoint": collector, "headers": {"x-collector-key": "k"}}
    path = write_config(tmp_path, deep_merge(base_config(database_url), extra))
    activate(path)
    cfg = config.current()
    from common.db import pool as store

    store.get()  # finish() also settles spend in Postgres: connect and migrate before anything is timed
    if warm:
        telemetry.pipeline(cfg)  # built by the first request otherwise (see the cold-start test)
    return cfg


def _finish(cfg: config.Config, endpoint: str = "messages", **usage: int) -> float:
    """One metered request through the real metering interface; returns finish()'s duration (s)."""
    info = RequestInfo(
        identity=WHO, model="claude-sonnet-4-5", upstream="vertex", upstream_model="claude-sonnet-4-5@20250929"
    )
    info.endpoint = endpoint
    ticket = metering.begin(cfg, info)
    figures = Usage(**usage) if usage else Usage(input_tokens=100, output_tokens=20)
    started = time.perf_counter()
    metering.finish(cfg, ticket, figures, 200, first_byte_ms=12.5)
    return time.perf_counter() - started


def test_finish_sends_token_usage_with_the_session_identity(tmp_path: Path, database_url: str) -> None:
    with otlp_receiver() as collector:
        cfg = _activate(tmp_path, database_url, collector.url, flush_interval_ms=0)
        _finish(
            cfg,
            input_tokens=100,
            output_tokens=20,
            cache_read_input_tokens=5,
            cache_creation_5m_input_tokens=7,
        )
        received = collector.wait_for(1)
        assert received[0][2].get("x-collector-key") == "k"
        points = data_points(collector.metrics(), "claude_code.token.usage")
    by_type = {attrs["type"]: value for _, attrs, value in points}
    assert by_type == {"input": 100, "output": 20, "cacheRead": 5, "cacheCreation": 7}
    for resource, attrs, _ in points:
        assert attrs["user.email"] == "ada@example.com"
        assert attrs["user.id"] == "idp|42"
        assert attrs["user.groups"] == "ml-research,eng"
        assert attrs["model"] == "claude-sonnet-4-5" and attrs["upstream"] == "vertex"
        assert resource["service.name"] == "claude-gateway" and resource["team"] == "platform"
    requests = data_points(collector.metrics(), "claude_gateway.requests")
    assert [(a["status"], a["user.email"], v) for _, a, v in requests] == [(200, "ada@example.com", 1)]
    assert data_points(collector.metrics(), "claude_gateway.request.duration")
    assert data_points(collector.metrics(), "claude_gateway.time_to_first_byte")


def test_cost_is_recorded_in_dollars(tmp_path: Path, database_url: str) -> None:
    with otlp_receiver() as collector:
        cfg = _activate(tmp_path, database_url, collector.url, flush_interval_ms=0)
        info = RequestInfo(identity=WHO, model="claude-haiku-4-5", upstream="vertex", upstream_model="h")
        telemetry.record(cfg, info, Usage(input_tokens=1), 1_234_567, 200, None)
        collector.wait_for(1)
        cost = data_points(collector.metrics(), "claude_code.cost.usage")
    assert [(a["user.email"], a["model"], v) for _, a, v in cost] == [("ada@example.com", "claude-haiku-4-5", 1.234567)]


def test_count_tokens_is_not_token_usage(tmp_path: Path, database_url: str) -> None:
    with otlp_receiver() as collector:
        cfg = _activate(tmp_path, database_url, collector.url, flush_interval_ms=0)
        _finish(cfg, endpoint="count_tokens", input_tokens=500)
        collector.wait_for(1)
        assert data_points(collector.metrics(), "claude_code.token.usage") == []
        assert data_points(collector.metrics(), "claude_gateway.requests")


def test_delta_temporality_exports_each_interval_once(tmp_path: Path, database_url: str) -> None:
    with otlp_receiver() as collector:
        cfg = _activate(tmp_path, database_url, collector.url, flush_interval_ms=0)
        _finish(cfg, input_tokens=10, output_tokens=1)
        _finish(cfg, input_tokens=30, output_tokens=1)
        collector.wait_for(2)
        inputs = [v for _, a, v in data_points(collector.metrics(), "claude_code.token.usage") if a["type"] == "input"]
    assert inputs == [10, 30]


def test_interval_batches_requests_into_one_flush(tmp_path: Path, database_url: str) -> None:
    with otlp_receiver() as collector:
        cfg = _activate(tmp_path, database_url, collector.url, flush_interval_ms=60_000)
        _finish(cfg, input_tokens=1, output_tokens=1)  # the first request flushes
        collector.wait_for(1)
        for _ in range(5):
            _finish(cfg, input_tokens=2, output_tokens=1)  # within the interval: no flush
        assert len(collector.received) == 1
        assert telemetry.flush(cfg)  # what shutdown (or the next due request) does
        collector.wait_for(2)
        inputs = [v for _, a, v in data_points(collector.metrics(), "claude_code.token.usage") if a["type"] == "input"]
    assert inputs == [1, 10]


def test_no_collector_is_a_no_op(tmp_path: Path, database_url: str) -> None:
    cfg = _activate(tmp_path, database_url, None)
    assert _finish(cfg) < 0.05
    assert telemetry.pipeline(cfg) is None
    assert telemetry.stats() == {}


def test_refused_collector_costs_at_most_the_flush_timeout_and_fails_nothing(tmp_path: Path, database_url: str) -> None:
    cfg = _activate(
        tmp_path, database_url, f"http://127.0.0.1:{free_port()}", flush_interval_ms=0, flush_timeout_ms=300
    )
    first = _finish(cfg)
    assert first < 0.3 + 0.1
    later = [_finish(cfg) for _ in range(20)]
    assert max(later) < 0.05  # after a failure, requests stop flushing for a while
    stats = telemetry.stats()
    assert stats["flush_failures"] == 1 and stats["recorded"] == 21 and "record_errors" not in stats


def test_hanging_collector_costs_at_most_the_flush_timeout(tmp_path: Path, database_url: str) -> None:
    with otlp_receiver("hang") as collector:
        cfg = _activate(tmp_path, database_url, collector.url, flush_interval_ms=0, flush_timeout_ms=400)
        first = _finish(cfg)
        assert 0.2 < first < 0.4 + 0.1  # it did wait for the collector, and no longer than the timeout
        assert max(_finish(cfg) for _ in range(10)) < 0.05
        assert telemetry.stats()["flush_failures"] == 1


def test_collector_answering_500_fails_nothing(tmp_path: Path, database_url: str) -> None:
    with otlp_receiver(500) as collector:
        cfg = _activate(tmp_path, database_url, collector.url, flush_interval_ms=0, flush_timeout_ms=300)
        assert _finish(cfg) < 0.4
        assert telemetry.stats()["flush_failures"] == 1


def test_changed_collector_gets_a_new_pipeline(tmp_path: Path, database_url: str) -> None:
    with otlp_receiver() as one, otlp_receiver() as two:
        cfg = _activate(tmp_path, database_url, one.url, flush_interval_ms=0)
        _finish(cfg)
        cfg2 = _activate(tmp_path, database_url, two.url, flush_interval_ms=0)
        _finish(cfg2)
        assert one.wait_for(1) and two.wait_for(1)


def test_first_request_does_not_wait_for_the_sdk_and_its_figures_arrive(tmp_path: Path, database_url: str) -> None:
    with otlp_receiver() as collector:
        cfg = _activate(tmp_path, database_url, collector.url, warm=False, flush_interval_ms=60_000)
        assert not telemetry.running(cfg)
        assert _finish(cfg, input_tokens=11, output_tokens=1) < 0.05  # the pipeline starts in a thread
        collector.wait_for(1)
        inputs = [v for _, a, v in data_points(collector.metrics(), "claude_code.token.usage") if a["type"] == "input"]
        assert inputs == [11]
        assert telemetry.running(cfg)
