"""POST /v1/metrics|logs|traces: spoofed identity overwritten, forwarded to the collector, always 200."""

from __future__ import annotations

import gzip
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests
from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest
from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import ExportMetricsServiceRequest
from opentelemetry.proto.common.v1.common_pb2 import KeyValue
from support import base_config, deep_merge, free_port, live_gateway, token_for, write_config
from support.otlp_receiver import Receiver, attrs, data_points, otlp_receiver

from common.telemetry import emit as telemetry
from common.telemetry import relay as telemetry_relay

GROUPS = ("ml-research", "eng")
SPOOF = {
    "user.email": "ceo@example.com",
    "user.id": "ceo",
    "user.groups": "claude-admins",
    "user.account_uuid": "spoofed",
    "enduser.id": "ceo@example.com",
    "User.Email": "ceo@example.com",
}


def _kv(items: dict[str, str]) -> list[KeyValue]:
    out = []
    for key, value in items.items():
        kv = KeyValue(key=key)
        kv.value.string_value = value
        out.append(kv)
    return out


def spoofed_metrics() -> ExportMetricsServiceRequest:
    request = ExportMetricsServiceRequest()
    rm = request.resource_metrics.add()
    rm.resource.attributes.extend(_kv({**SPOOF, "service.name": "claude-code", "os.type": "linux"}))
    sm = rm.scope_metrics.add()
    sm.scope.name = "com.anthropic.claude_code"
    sm.scope.attributes.extend(_kv({"user.email": "scope@evil"}))
    metric = sm.metrics.add()
    metric.name = "claude_code.token.usage"
    metric.unit = "tokens"
    metric.sum.aggregation_temporality = 1
    metric.sum.is_monotonic = True
    for kind, value in (("input", 120), ("output", 30)):
        point = metric.sum.data_points.add()
        point.as_double = value
        point.attributes.extend(_kv({**SPOOF, "type": kind, "model": "claude-sonnet-4-5", "session.id": "s1"}))
        exemplar = point.exemplars.add()
        exemplar.as_double = 1
        exemplar.filtered_attributes.extend(_kv({"user.email": "exemplar@evil"}))
    return request


@pytest.fixture
def collector() -> Iterator[Receiver]:
    with otlp_receiver() as receiver:
        yield receiver


@pytest.fixture(autouse=True)
def _fresh() -> Iterator[None]:
    telemetry.reset()
    telemetry_relay.reset()
    yield
    telemetry.reset()


def _gateway_config(tmp_path: Path, database_url: str, forward_url: str, **dest: Any) -> Path:
    destination = {"url": forward_url, "metrics": True, "logs": True, "traces": True, **dest}
    telemetry_cfg = {"forward_to": [destination], "resource_attributes": {"team": "platform"}}
    return write_config(tmp_path, deep_merge(base_config(database_url), {"telemetry": telemetry_cfg}))


@pytest.fixture
def gateway(tmp_path: Path, database_url: str, collector: Receiver) -> Iterator[tuple[str, str]]:
    path = _gateway_config(tmp_path, database_url, collector.url, headers={"authorization": "Bearer collector-key"})
    token = token_for(path, email="ada@example.com", groups=GROUPS)
    with live_gateway(path) as live:
        yield live.url, token


def post(url: str, path: str, body: bytes, token: str | None, content_type: str, **headers: str) -> requests.Response:
    if token is not None:
        headers["Authorization"] = f"Bearer {token}"
    return requests.post(f"{url}{path}", data=body, headers={"Content-Type": content_type, **headers}, timeout=10)


def _assert_identity(found: dict[str, Any]) -> None:
    assert found["user.email"] == "ada@example.com"
    assert found["user.id"] == "ada@example.com"
    assert found["user.groups"] == "ml-research,eng"
    ours = {"user.email", "user.id", "user.groups"}
    assert [k for k in found if k.lower().startswith(("user.", "enduser."))] == [k for k in found if k in ours]


def test_protobuf_export_is_stamped_with_the_session_identity(gateway: tuple[str, str], collector: Receiver) -> None:
    url, token = gateway
    response = post(url, "/v1/metrics", spoofed_metrics().SerializeToString(), token, "application/x-protobuf")
    assert response.status_code == 200
    assert response.content == b""
    assert response.headers["Content-Type"] == "application/x-protobuf"
    path, message, headers = collector.wait_for(1)[0]
    assert path == "/v1/metrics" and headers["authorization"] == "Bearer collector-key"
    points = data_points([message], "claude_code.token.usage")
    assert sorted((a["type"], v) for _, a, v in points) == [("input", 120.0), ("output", 30.0)]
    for resource, point, _ in points:
        _assert_identity(resource)
        _assert_identity(point)
        assert resource["service.name"] == "claude-code" and resource["os.type"] == "linux"
        assert resource["team"] == "platform"
        assert point["session.id"] == "s1" and point["model"] == "claude-sonnet-4-5"
    scope = message.resource_metrics[0].scope_metrics[0].scope
    assert attrs(scope.attributes) == {}
    exemplar = message.resource_metrics[0].scope_metrics[0].metrics[0].sum.data_points[0].exemplars[0]
    assert attrs(exemplar.filtered_attributes) == {}


def test_otlp_json_export_is_stamped_and_forwarded(gateway: tuple[str, str], collector: Receiver) -> None:
    from google.protobuf import json_format

    url, token = gateway
    document = json_format.MessageToDict(spoofed_metrics())
    response = post(url, "/v1/metrics", json.dumps(document).encode(), token, "application/json; charset=utf-8")
    assert response.status_code == 200 and response.json() == {}
    _, message, _ = collector.wait_for(1)[0]
    points = data_points([message], "claude_code.token.usage")
    assert len(points) == 2
    for resource, point, _ in points:
        _assert_identity(resource)
        _assert_identity(point)


def test_gzip_export_is_decompressed_stamped_and_forwarded(gateway: tuple[str, str], collector: Receiver) -> None:
    url, token = gateway
    body = gzip.compress(spoofed_metrics().SerializeToString())
    response = post(url, "/v1/metrics", body, token, "application/x-protobuf", **{"Content-Encoding": "gzip"})
    assert response.status_code == 200
    _, message, _ = collector.wait_for(1)[0]
    for resource, point, _ in data_points([message], "claude_code.token.usage"):
        _assert_identity(resource)
        _assert_identity(point)


def test_otel_sdk_client_with_spoofed_resource_attributes(
    gateway: tuple[str, str], collector: Receiver, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A real OTel SDK exporter, configured the way a developer would spoof: OTEL_RESOURCE_ATTRIBUTES."""
    from opentelemetry.exporter.otlp.proto.http.metric_exporter import OTLPMetricExporter
    from opentelemetry.sdk.metrics import MeterProvider
    from opentelemetry.sdk.metrics.export import PeriodicExportingMetricReader
    from opentelemetry.sdk.resources import Resource

    url, token = gateway
    monkeypatch.setenv(
        "OTEL_RESOURCE_ATTRIBUTES", "user.email=ceo@example.com,user.groups=claude-admins,enduser.id=ceo"
    )
    exporter = OTLPMetricExporter(endpoint=f"{url}/v1/metrics", headers={"Authorization": f"Bearer {token}"})
    reader = PeriodicExportingMetricReader(exporter, export_interval_millis=float("inf"))
    provider = MeterProvider(resource=Resource.create({"service.name": "claude-code"}), metric_readers=[reader])
    counter = provider.get_meter("com.anthropic.claude_code").create_counter("claude_code.token.usage")
    counter.add(42, {"type": "input", "model": "claude-opus-4-5", "user.email": "ceo@example.com"})
    assert reader.force_flush(timeout_millis=5000)
    provider.shutdown()
    _, message, _ = collector.wait_for(1)[0]
    points = data_points([message], "claude_code.token.usage")
    assert [(a["type"], v) for _, a, v in points] == [("input", 42)]
    resource, point, _ = points[0]
    _assert_identity(resource)
    _assert_identity(point)
    assert "enduser.id" not in resource


def test_traces_json_keeps_hex_ids(gateway: tuple[str, str], collector: Receiver) -> None:
    url, token = gateway
    trace_id, span_id = "5b8efff798038103d269b633813fc60c", "eee19b7ec3c1b174"
    document = {
        "resourceSpans": [
            {
                "resource": {"attributes": [{"key": "user.email", "value": {"stringValue": "ceo@example.com"}}]},
                "scopeSpans": [
                    {
                        "spans": [
                            {
                                "traceId": trace_id,
                                "spanId": span_id,
                                "parentSpanId": "",
                                "name": "claude_code.interaction",
                                "kind": 1,
                                "startTimeUnixNano": "1700000000000000000",
                                "endTimeUnixNano": "1700000001000000000",
                                "attributes": [{"key": "enduser.id", "value": {"stringValue": "ceo"}}],
                                "events": [
                                    {"name": "e", "attributes": [{"key": "user.id", "value": {"stringValue": "x"}}]}
                                ],
                            }
                        ]
                    }
                ],
            }
        ]
    }
    response = post(url, "/v1/traces", json.dumps(document).encode(), token, "application/json")
    assert response.status_code == 200 and response.json() == {}
    path, message, _ = collector.wait_for(1)[0]
    assert path == "/v1/traces"
    span = message.resource_spans[0].scope_spans[0].spans[0]
    assert span.trace_id.hex() == trace_id and span.span_id.hex() == span_id
    _assert_identity(attrs(message.resource_spans[0].resource.attributes))
    _assert_identity(attrs(span.attributes))
    assert attrs(span.events[0].attributes) == {}


def test_logs_are_stamped(gateway: tuple[str, str], collector: Receiver) -> None:
    url, token = gateway
    request = ExportLogsServiceRequest()
    rl = request.resource_logs.add()
    rl.resource.attributes.extend(_kv(SPOOF))
    record = rl.scope_logs.add().log_records.add()
    record.body.string_value = "claude_code.api_request"
    record.attributes.extend(_kv({**SPOOF, "event.name": "api_request"}))
    assert post(url, "/v1/logs", request.SerializeToString(), token, "application/x-protobuf").status_code == 200
    _, message, _ = collector.wait_for(1)[0]
    forwarded = message.resource_logs[0].scope_logs[0].log_records[0]
    _assert_identity(attrs(message.resource_logs[0].resource.attributes))
    _assert_identity(attrs(forwarded.attributes))
    assert attrs(forwarded.attributes)["event.name"] == "api_request"


def test_without_a_valid_bearer_nothing_is_forwarded(gateway: tuple[str, str], collector: Receiver) -> None:
    url, _ = gateway
    body = spoofed_metrics().SerializeToString()
    for token in (None, "forged.token.value"):
        response = post(url, "/v1/metrics", body, token, "application/x-protobuf")
        assert response.status_code == 401
        assert response.json()["error"]["type"] == "authentication_error"
    assert collector.wait_for(1, timeout=0.5) == []


@pytest.mark.parametrize(
    ("body", "content_type", "extra"),
    [
        (b"\xff\xff\xff garbage", "application/x-protobuf", {}),
        (b"{not json", "application/json", {}),
        (b'{"resourceMetrics": 5}', "application/json", {}),
        (b"\x1f\x8b broken gzip", "application/x-protobuf", {"Content-Encoding": "gzip"}),
        (b"x", "application/x-protobuf", {"Content-Encoding": "br"}),
    ],
)
def test_bad_exports_are_dropped_with_200(
    gateway: tuple[str, str], collector: Receiver, body: bytes, content_type: str, extra: dict[str, str]
) -> None:
    url, token = gateway
    response = post(url, "/v1/metrics", body, token, content_type, **extra)
    assert response.status_code == 200
    assert collector.wait_for(1, timeout=0.3) == []
    assert telemetry.stats().get("relay_dropped") == 1


def test_oversize_and_gzip_bombs_are_dropped(tmp_path: Path, database_url: str, collector: Receiver) -> None:
    path = write_config(
        tmp_path,
        deep_merge(
            base_config(database_url),
            {"telemetry": {"forward_to": [{"url": collector.url}], "relay_max_bytes": 4096}},
        ),
    )
    token = token_for(path)
    with live_gateway(path) as live:
        big = post(live.url, "/v1/metrics", b"\x00" * 10_000, token, "application/x-protobuf")
        bomb = gzip.compress(b"\x00" * 1_000_000)
        assert len(bomb) < 4096
        inflated = post(live.url, "/v1/metrics", bomb, token, "application/x-protobuf", **{"Content-Encoding": "gzip"})
        assert big.status_code == 200 and inflated.status_code == 200
    assert collector.wait_for(1, timeout=0.3) == []
    assert telemetry.stats().get("relay_dropped") == 2


def test_signal_not_enabled_is_answered_but_not_forwarded(
    tmp_path: Path, database_url: str, collector: Receiver
) -> None:
    path = _gateway_config(tmp_path, database_url, collector.url, logs=False)
    token = token_for(path)
    with live_gateway(path) as live:
        response = post(
            live.url, "/v1/logs", ExportLogsServiceRequest().SerializeToString(), token, "application/x-protobuf"
        )
        assert response.status_code == 200
    assert collector.wait_for(1, timeout=0.3) == []


@pytest.mark.parametrize("mode", ["refused", 503, "hang"])
def test_forward_failures_never_reach_the_client(tmp_path: Path, database_url: str, mode: str | int) -> None:
    with otlp_receiver(mode if mode != "refused" else "ok") as sink:
        target = f"http://127.0.0.1:{free_port()}" if mode == "refused" else sink.url
        config = deep_merge(
            base_config(database_url),
            {"telemetry": {"forward_to": [{"url": target}], "forward_timeout_ms": 300}},
        )
        path = write_config(tmp_path, config)
        token = token_for(path)
        with live_gateway(path) as live:
            response = post(
                live.url, "/v1/metrics", spoofed_metrics().SerializeToString(), token, "application/x-protobuf"
            )
            assert response.status_code == 200 and response.content == b""
            assert response.elapsed.total_seconds() < 2
    assert telemetry.stats().get("relay_failed") == 1


def test_a_dead_destination_is_skipped_after_repeated_failures(tmp_path: Path, database_url: str) -> None:
    target = f"http://127.0.0.1:{free_port()}"
    config = deep_merge(base_config(database_url), {"telemetry": {"forward_to": [{"url": target}]}})
    path = write_config(tmp_path, config)
    token = token_for(path)
    with live_gateway(path) as live:
        for _ in range(7):
            post(live.url, "/v1/metrics", spoofed_metrics().SerializeToString(), token, "application/x-protobuf")
        stats = telemetry.stats()
        assert stats["relay_failed"] == 5 and stats["relay_skipped"] == 2
        telemetry_relay.reset()  # the breaker closes: the next export is tried again
        post(live.url, "/v1/metrics", spoofed_metrics().SerializeToString(), token, "application/x-protobuf")
    stats = telemetry.stats()
    assert stats["relay_failed"] == 6 and stats["relay_skipped"] == 2


def test_a_session_without_groups_sends_no_groups_even_if_the_client_claims_some(
    tmp_path: Path, database_url: str, collector: Receiver
) -> None:
    path = _gateway_config(tmp_path, database_url, collector.url)
    token = token_for(path, email="solo@example.com", groups=())
    with live_gateway(path) as live:
        post(live.url, "/v1/metrics", spoofed_metrics().SerializeToString(), token, "application/x-protobuf")
    _, message, _ = collector.wait_for(1)[0]
    for resource, point, _ in data_points([message], "claude_code.token.usage"):
        for found in (resource, point):
            assert found["user.email"] == "solo@example.com"
            assert "user.groups" not in found


def test_spoofable_keys() -> None:
    for key in ("user.email", "User.Email", "enduser.id", "enduser.sub", "user.account_uuid", " user.x"):
        assert telemetry_relay.spoofable(key)
    for key in ("username", "users.count", "service.name", "session.id", "organization.id"):
        assert not telemetry_relay.spoofable(key)
