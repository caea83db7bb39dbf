"""Failover across a model's upstreams (issue 14, finding 13), end to end and unit by unit.

Two real stand-in upstreams stand for two Vertex regions (and one for the
Anthropic API): the first answers 429 or is stopped (connection refused),
requests succeed through the second with no error, the breaker stops sending
to the first, and traffic returns to the first once it answers again. The
ledger (real Postgres), the access log and telemetry name the upstream that
served.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests
import yaml
from support import base_config, deep_merge, free_port, live_gateway, parsed_config, token_for, write_config
from support.logcapture import capture_logs
from support.otlp_receiver import data_points, otlp_receiver
from support.spend import release_leases, set_limit

from common import config
from common.config import ConfigError
from common.db import pool
from common.proxy import upstreams
from common.telemetry import emit as telemetry
from gateway.standins import upstream as standin_module

COOLDOWN = 0.6
SONNET_VERTEX = "claude-sonnet-4-5@20250929"


@pytest.fixture(autouse=True)
def _fresh_breakers() -> Iterator[None]:
    upstreams.BREAKERS.reset()
    telemetry.reset()
    yield
    upstreams.BREAKERS.reset()
    telemetry.reset()


@pytest.fixture
def first() -> Iterator[Any]:
    handle = standin_module.start()
    yield handle
    handle.stop()


@pytest.fixture
def second() -> Iterator[Any]:
    handle = standin_module.start()
    yield handle
    handle.stop()


def _vertex(name: str, base_url: str, failures: int = 2) -> dict[str, Any]:
    return {
        "name": name,
        "provider": "vertex",
        "project_id": "test-project",
        "region": name,
        "base_url": base_url,
        "auth": {"anonymous": "true"},
        "models": ["claude-*"],
        "circuit_breaker": {"failures": failures, "cooldown_seconds": COOLDOWN},
    }


def _two_regions(
    tmp_path: Path, database_url: str, first_url: str, second_url: str, extra: dict[str, Any] | None = None
) -> Path:
    data = base_config(database_url)
    data["upstreams"] = [_vertex("us-east5", first_url), _vertex("europe-west1", second_url)]
    data["models"] = []  # the catalogue's ids: both upstreams serve every model, us-east5 first
    return write_config(tmp_path, deep_merge(data, extra or {}))


def _post(url: str, path: Path, stream: bool = False, model: str = "claude-sonnet-4-5") -> requests.Response:
    body = {"model": model, "max_tokens": 64, "stream": stream, "messages": [{"role": "user", "content": "hi"}]}
    headers = {"Authorization": f"Bearer {token_for(path)}", "content-type": "application/json"}
    return requests.post(url + "/v1/messages", data=json.dumps(body), headers=headers, timeout=30)


def _assert_served(response: requests.Response, stream: bool) -> None:
    """A whole, error-free reply: what the client sees is as if nothing had failed."""
    assert response.status_code == 200, response.text
    assert "retry-after" not in response.headers
    if stream:
        assert "event: message_stop" in response.text and "event: error" not in response.text
    else:
        assert response.json()["usage"]["input_tokens"] == 25


def _ledger() -> list[tuple[str, str, int, int]]:
    rows = pool.get().execute("SELECT upstream, upstream_model, status, input_tokens FROM spend_usage ORDER BY at")
    return [tuple(row) for row in rows]  # type: ignore[misc]


def _wait_ledger(count: int, timeout: float = 10.0) -> list[tuple[str, str, int, int]]:
    deadline = time.monotonic() + timeout
    rows = _ledger()
    while len(rows) < count and time.monotonic() < deadline:
        time.sleep(0.05)
        rows = _ledger()
    return rows


def _holds() -> int:
    release_leases()  # the instance's budget lease outlives its requests by design (docs/spend.md)
    return int(pool.get().execute("SELECT count(*) FROM spend_holds")[0][0])


# --- end to end ----------------------------------------------------------------------------


def test_429_fails_over_to_the_second_region_and_recovers_to_the_first(
    tmp_path: Path, database_url: str, first: Any, second: Any
) -> None:
    path = _two_regions(tmp_path, database_url, first.base_url, second.base_url)
    first.configure(error_status=429, error_type="rate_limit_error", error_message="Quota exceeded for test-project")
    with otlp_receiver() as collector:
        data = yaml.safe_load(path.read_text())
        data["telemetry"] = {"collector": {"endpoint": collector.url}, "flush_interval_ms": 0}
        write_config(tmp_path, data)
        with live_gateway(path) as live, capture_logs() as logs:
            set_limit("user", "dev@example.com", "daily", "100")  # so every request really holds spend
            for stream in (False, True, False, True):
                _assert_served(_post(live.url, path, stream), stream)
            # two 429s opened us-east5's breaker: the last two went straight to europe-west1
            assert len(first.requests) == 2 and len(second.requests) == 4
            assert _wait_ledger(4) == [("europe-west1", SONNET_VERTEX, 200, 25)] * 4
            assert upstreams.BREAKERS.is_open(_cfg_upstream("us-east5"))

            first.configure(error_status=0)  # the quota is back
            _assert_served(_post(live.url, path), False)  # still cooling down: europe-west1 serves
            assert len(first.requests) == 2 and len(second.requests) == 5
            time.sleep(COOLDOWN + 0.1)
            for stream in (False, True, False):
                _assert_served(_post(live.url, path, stream), stream)
            assert len(first.requests) == 5 and len(second.requests) == 5  # the probe closed it
            rows = _wait_ledger(8)
            assert not upstreams.BREAKERS.is_open(_cfg_upstream("us-east5"))
        collector.wait_for(8)
        points = data_points(collector.metrics(), "claude_gateway.requests")
    assert [r[0] for r in rows[5:]] == ["us-east5"] * 3
    assert _holds() == 0  # one reservation per request, each settled once
    served: dict[str, float] = {}
    for _, point, value in points:  # delta temporality: one point per export, summed
        if point["status"] == 200:
            served[point["upstream"]] = served.get(point["upstream"], 0) + value
    assert served == {"europe-west1": 5, "us-east5": 3}
    lines = logs.lines()
    access = [line for line in lines if line["message"] == "request" and line.get("path") == "/v1/messages"]
    assert [line.get("upstream") for line in access] == (["europe-west1"] * 5 + ["us-east5"] * 3)
    failover = [line for line in lines if line["message"] == "upstream failover"]
    assert [line["failed"] for line in failover] == [["us-east5:429"]] * 2
    opened = [line for line in lines if line["message"] == "upstream circuit opened"]
    assert [(line["upstream"], line["reason"]) for line in opened] == [("us-east5", "429")]
    assert any(line["message"] == "upstream circuit closed" for line in lines)
    assert "test-project" not in "".join(json.dumps(line.get("failed")) for line in failover)


def _cfg_upstream(name: str) -> Any:
    return next(u for u in config.current().upstreams if u.name == name)


def test_connection_refused_fails_over_and_recovers_when_the_first_returns(
    tmp_path: Path, database_url: str, second: Any
) -> None:
    port = free_port()
    first = standin_module.start(port=port)
    path = _two_regions(tmp_path, database_url, first.base_url, second.base_url)
    try:
        with live_gateway(path) as live:
            _assert_served(_post(live.url, path), False)
            assert len(first.requests) == 1
            first.stop()  # refuses connections from now on (pooled ones are dropped too)
            for stream in (True, False, True, False):
                _assert_served(_post(live.url, path, stream), stream)
            assert len(second.requests) == 4
            first = standin_module.start(port=port)  # back on the same address
            time.sleep(COOLDOWN + 0.1)
            for stream in (False, True):
                _assert_served(_post(live.url, path, stream), stream)
            assert len(first.requests) == 2 and len(second.requests) == 4
            rows = _wait_ledger(7)
    finally:
        first.stop()
    assert [r[0] for r in rows] == ["us-east5"] + ["europe-west1"] * 4 + ["us-east5"] * 2
    assert all(r[2] == 200 for r in rows)


def test_the_anthropic_api_is_the_last_resort_in_an_explicit_order(
    tmp_path: Path, database_url: str, first: Any, second: Any
) -> None:
    second.configure(api_key="sk-ant-standin-key")
    dead = f"http://127.0.0.1:{free_port()}/v1"  # nothing listens: connection refused
    extra = {
        "upstreams": [
            _vertex("us-east5", first.base_url),
            _vertex("europe-west1", dead),
            {
                "name": "anthropic",
                "provider": "anthropic",
                "base_url": second.origin,
                "auth": {"api_key": "sk-ant-standin-key"},
                "models": ["claude-haiku-*"],  # listed explicitly below for sonnet anyway
            },
        ],
        "models": [{"id": "claude-sonnet-4-5", "upstreams": ["europe-west1", "us-east5", "anthropic"]}],
    }
    path = _two_regions(tmp_path, database_url, first.base_url, dead, extra)
    first.configure(error_status=503, error_format="vertex", error_message="projects/test-project unavailable")
    with live_gateway(path) as live:
        _assert_served(_post(live.url, path), False)
        _assert_served(_post(live.url, path, stream=True), True)
    (one, two) = second.requests
    assert one.path == "/v1/messages" and one.json["model"] == "claude-sonnet-4-5"
    assert "anthropic_version" not in one.json and one.headers["x-api-key"] == "sk-ant-standin-key"
    assert two.json["stream"] is True
    assert len(first.requests) == 2  # tried second, after the refused europe-west1
    assert _wait_ledger(2) == [("anthropic", "claude-sonnet-4-5", 200, 25)] * 2


@pytest.mark.parametrize("status", [401, 403, 404, 500, 503, 529])
def test_credential_config_and_server_errors_fail_over(
    tmp_path: Path, database_url: str, first: Any, second: Any, status: int
) -> None:
    """401/403/404 are our own credential or config at one upstream (decided: fail over, like
    Anthropic's gateway); 5xx and 529 are temporary."""
    path = _two_regions(tmp_path, database_url, first.base_url, second.base_url)
    first.configure(error_status=status, error_format="vertex", error_message="projects/test-project: no")
    with live_gateway(path) as live:
        _assert_served(_post(live.url, path), False)
    assert len(first.requests) == 1 and len(second.requests) == 1


def test_an_error_about_the_request_is_not_failed_over(
    tmp_path: Path, database_url: str, first: Any, second: Any
) -> None:
    path = _two_regions(tmp_path, database_url, first.base_url, second.base_url)
    first.configure(
        error_status=400, error_type="invalid_request_error", error_message="prompt is too long: 9 tokens > 1 maximum"
    )
    with live_gateway(path) as live:
        response = _post(live.url, path)
    assert response.status_code == 400
    assert response.json()["error"]["message"] == "prompt is too long: 9 tokens > 1 maximum"
    assert not second.requests  # every upstream would refuse it
    assert _wait_ledger(1) == [("us-east5", SONNET_VERTEX, 400, 0)]
    assert not upstreams.BREAKERS.is_open(_cfg_upstream("us-east5"))


def test_when_every_upstream_fails_the_client_gets_the_temporary_error_once(
    tmp_path: Path, database_url: str, first: Any, second: Any
) -> None:
    path = _two_regions(tmp_path, database_url, first.base_url, second.base_url)
    first.configure(error_status=429, error_type="rate_limit_error", error_message="Quota exceeded for test-project")
    second.configure(error_status=404, error_format="vertex", error_message="model not enabled in test-project")
    with live_gateway(path) as live:
        set_limit("user", "dev@example.com", "daily", "100")
        response = _post(live.url, path)
        streamed = _post(live.url, path, stream=True)
    for reply in (response, streamed):
        assert reply.status_code == 429 and reply.json()["error"]["type"] == "rate_limit_error"
        assert reply.headers["retry-after"] == "7" and "test-project" not in reply.text
    # one row per request (not per attempt), the failure the client heard of; no hold left behind
    assert _wait_ledger(2) == [("us-east5", SONNET_VERTEX, 429, 0)] * 2
    assert _holds() == 0


def test_a_single_upstream_is_always_tried_even_with_its_breaker_open(tmp_path: Path, database_url: str) -> None:
    dead = f"http://127.0.0.1:{free_port()}/v1"
    data = base_config(database_url, upstream_url=dead)
    data["upstreams"][0]["circuit_breaker"] = {"failures": 1, "cooldown_seconds": 60}
    path = write_config(tmp_path, data)
    with live_gateway(path) as live:
        started = time.monotonic()
        statuses = [_post(live.url, path).status_code for _ in range(3)]
    assert statuses == [502, 502, 502]  # tried each time (nothing else to try), not refused unseen
    assert time.monotonic() - started < 10


def test_with_every_breaker_open_the_first_upstream_is_still_tried(
    tmp_path: Path, database_url: str, first: Any, second: Any
) -> None:
    path = _two_regions(tmp_path, database_url, first.base_url, second.base_url)
    for handle in (first, second):
        handle.configure(error_status=503)
    with live_gateway(path) as live:
        assert [_post(live.url, path).status_code for _ in range(2)] == [503, 503]
        assert len(first.requests) == 2 and len(second.requests) == 2  # both breakers open now
        assert _post(live.url, path).status_code == 503
        assert len(first.requests) == 3 and len(second.requests) == 2  # one try, the first in order
        first.configure(error_status=0)
        _assert_served(_post(live.url, path), False)
        assert not upstreams.BREAKERS.is_open(_cfg_upstream("us-east5"))
        assert upstreams.BREAKERS.is_open(_cfg_upstream("europe-west1"))


# --- routing order -----------------------------------------------------------------------


def _routing_config(**models: Any) -> Any:
    return parsed_config(
        {
            "upstreams": [
                _vertex("us-east5", "http://127.0.0.1:1/v1"),
                _vertex("europe-west1", "http://127.0.0.1:2/v1"),
                {
                    "name": "anthropic",
                    "provider": "anthropic",
                    "base_url": "http://127.0.0.1:3",
                    "auth": {"api_key": "k"},
                    "models": ["claude-haiku-*", "claude-mythos-*"],
                },
            ],
            "models": models.get("models", []),
        }
    )


def _order(cfg: Any, model: str) -> list[tuple[str, str]]:
    return [(r.upstream.name, r.upstream_model) for r in upstreams.routes(cfg, model)]


def test_the_failover_order_is_derived_from_the_config() -> None:
    cfg = _routing_config()
    assert _order(cfg, "claude-sonnet-4-5") == [("us-east5", SONNET_VERTEX), ("europe-west1", SONNET_VERTEX)]
    assert _order(cfg, "claude-haiku-4-5-20251001") == [
        ("us-east5", "claude-haiku-4-5@20251001"),
        ("europe-west1", "claude-haiku-4-5@20251001"),
        ("anthropic", "claude-haiku-4-5-20251001"),
    ]
    assert _order(cfg, "claude-mythos-5-2") == [("anthropic", "claude-mythos-5-2")]  # not on Vertex
    assert upstreams.route(cfg, "claude-sonnet-4-5").upstream.name == "us-east5"


def test_an_explicit_order_and_upstream_model_entries() -> None:
    cfg = _routing_config(
        models=[
            {"id": "claude-sonnet-4-5", "upstreams": ["anthropic", "europe-west1"]},
            {"id": "claude-opus-4-5", "upstream_model": {"anthropic": "claude-opus-4-5-20251101"}},
        ]
    )
    assert _order(cfg, "claude-sonnet-4-5") == [("anthropic", "claude-sonnet-4-5"), ("europe-west1", SONNET_VERTEX)]
    assert _order(cfg, "claude-opus-4-5") == [
        ("us-east5", "claude-opus-4-5@20251101"),
        ("europe-west1", "claude-opus-4-5@20251101"),
        ("anthropic", "claude-opus-4-5-20251101"),  # an upstream_model entry serves it despite the globs
    ]


def test_an_open_breaker_moves_its_upstream_last() -> None:
    cfg = _routing_config()
    us = cfg.upstreams[0]
    upstreams.BREAKERS.failed(us, "429")
    assert [n for n, _ in _order(cfg, "claude-sonnet-4-5")] == ["us-east5", "europe-west1"]  # 1 of 2
    upstreams.BREAKERS.failed(us, "429")
    assert [n for n, _ in _order(cfg, "claude-sonnet-4-5")] == ["europe-west1", "us-east5"]
    time.sleep(COOLDOWN + 0.05)
    assert [n for n, _ in _order(cfg, "claude-sonnet-4-5")] == ["us-east5", "europe-west1"]  # may probe


# --- the breaker -----------------------------------------------------------------------------


def _upstream(failures: int = 3, cooldown: float = 0.2, base_url: str = "http://127.0.0.1:1/v1") -> Any:
    entry = {**_vertex("vertex", base_url), "circuit_breaker": {"failures": failures, "cooldown_seconds": cooldown}}
    return parsed_config({"upstreams": [entry]}).upstreams[0]


def test_breaker_opens_after_consecutive_failures_and_half_opens_for_one_probe() -> None:
    breakers = upstreams.Breakers()
    up = _upstream()
    breakers.failed(up, "429")
    breakers.failed(up, "429")
    breakers.succeeded(up)  # not consecutive
    breakers.failed(up, "429")
    breakers.failed(up, "429")
    assert breakers.acquire(up) and not breakers.is_open(up)
    breakers.failed(up, "429")
    assert breakers.is_open(up) and not breakers.available(up)
    assert not breakers.acquire(up)
    assert breakers.acquire(up, force=True)  # nothing else left
    time.sleep(0.25)
    assert breakers.available(up)
    assert breakers.acquire(up)  # the probe
    assert not breakers.acquire(up) and not breakers.available(up)  # one probe at a time
    breakers.failed(up, "ConnectFailed")
    assert not breakers.acquire(up)  # another cool-down
    time.sleep(0.25)
    assert breakers.acquire(up)
    breakers.succeeded(up)
    assert not breakers.is_open(up) and all(breakers.acquire(up) for _ in range(5))


def test_only_one_of_many_concurrent_requests_probes() -> None:
    breakers = upstreams.Breakers()
    up = _upstream(failures=1, cooldown=0.1)
    breakers.failed(up, "503")
    time.sleep(0.15)
    got: list[bool] = []
    barrier = threading.Barrier(8)

    def contend() -> None:
        barrier.wait()
        got.append(breakers.acquire(up))

    threads = [threading.Thread(target=contend) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(got) == [False] * 7 + [True]


def test_a_changed_config_entry_starts_with_a_closed_breaker() -> None:
    breakers = upstreams.Breakers()
    up = _upstream(failures=1, cooldown=60)
    breakers.failed(up, "401")
    assert not breakers.acquire(up)
    moved = _upstream(failures=1, cooldown=60, base_url="http://127.0.0.1:2/v1")
    assert breakers.available(moved) and breakers.acquire(moved)


# --- config rules ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("extra", "needle"),
    [
        ({"models": [{"id": "claude-sonnet-4-5", "upstreams": ["nope"]}]}, "models[0].upstreams[0]: no upstream"),
        ({"models": [{"id": "claude-sonnet-4-5", "upstreams": []}]}, "models[0].upstreams: expected at least one"),
        (
            {"models": [{"id": "claude-sonnet-4-5", "upstreams": ["vertex", "vertex"]}]},
            "models[0].upstreams[1]: 'vertex' is listed twice",
        ),
        (
            {"upstreams": [{**_vertex("vertex", "http://127.0.0.1:1/v1"), "circuit_breaker": {"failures": 0}}]},
            "upstreams[0].circuit_breaker.failures: expected 1 to 1000",
        ),
        (
            {"upstreams": [{**_vertex("vertex", "http://127.0.0.1:1/v1"), "circuit_breaker": {"cooldown_seconds": 0}}]},
            "upstreams[0].circuit_breaker.cooldown_seconds",
        ),
    ],
)
def test_config_rules_name_the_key(extra: dict[str, Any], needle: str) -> None:
    with pytest.raises(ConfigError) as caught:
        parsed_config(extra)
    assert any(needle in problem for problem in caught.value.problems), caught.value.problems


def test_an_upstream_model_outside_the_explicit_order_is_a_warning() -> None:
    data = deep_merge(base_config("postgresql://postgres@127.0.0.1:1/x"), {})
    data["upstreams"].append({**_vertex("eu", "http://127.0.0.1:2/v1")})
    data["models"] = [{"id": "claude-sonnet-4-5", "upstreams": ["eu"], "upstream_model": {"vertex": "x@1"}}]
    loaded = config.parse(yaml.safe_dump(data), "t")
    assert any("models[0].upstream_model.vertex" in w and "never sent" in w for w in loaded.warnings)


# --- cost ------------------------------------------------------------------------------------


def test_one_failover_adds_a_few_milliseconds(tmp_path: Path, database_url: str, first: Any, second: Any) -> None:
    """The added latency of one failover, interleaved with direct requests (`-s` prints the figures).

    Three models on one gateway: sonnet goes straight to a healthy upstream,
    haiku first to a port that refuses connections, opus first to an upstream
    answering 429; the breakers never open (failures: 1000).
    """
    first.configure(error_status=429, error_type="rate_limit_error", record=False)
    second.configure(record=False)
    refused = f"http://127.0.0.1:{free_port()}/v1"
    extra = {
        "upstreams": [
            _vertex("healthy", second.base_url, failures=1000),
            _vertex("refused", refused, failures=1000),
            _vertex("limited", first.base_url, failures=1000),
        ],
        "models": [
            {"id": "claude-sonnet-4-5", "upstreams": ["healthy"]},
            {"id": "claude-haiku-4-5", "upstreams": ["refused", "healthy"]},
            {"id": "claude-opus-4-5", "upstreams": ["limited", "healthy"]},
        ],
    }
    path = _two_regions(tmp_path, database_url, second.base_url, second.base_url, extra)
    token = token_for(path)
    timings: dict[str, list[float]] = {"direct": [], "refused": [], "429": []}
    models = {"direct": "claude-sonnet-4-5", "refused": "claude-haiku-4-5", "429": "claude-opus-4-5"}
    with live_gateway(path) as live, requests.Session() as session:
        session.headers.update({"Authorization": f"Bearer {token}", "content-type": "application/json"})
        for i in range(110):
            for kind, model in models.items():
                body = json.dumps({"model": model, "max_tokens": 8, "messages": [{"role": "user", "content": "hi"}]})
                started = time.perf_counter()
                response = session.post(live.url + "/v1/messages", data=body, timeout=30)
                elapsed = (time.perf_counter() - started) * 1000
                assert response.status_code == 200, response.text
                if i >= 10:  # warm: connections pooled, routes derived
                    timings[kind].append(elapsed)

    def median(values: list[float]) -> float:
        return sorted(values)[len(values) // 2]

    # paired with the direct request sent just before: the machine's drift cancels out
    added = {k: median([a - b for a, b in zip(timings[k], timings["direct"], strict=True)]) for k in ("refused", "429")}
    print(
        f"\nfailover latency (ms, n={len(timings['direct'])} each): direct median {median(timings['direct']):.2f}; "
        f"added by one failover: connection refused +{added['refused']:.2f}, 429 +{added['429']:.2f} (median of pairs)"
    )
    assert added["refused"] < 50 and added["429"] < 50  # a loopback failover is milliseconds, not a timeout
