"""`POST /v1/metrics|logs|traces`: Claude Code's own OTLP exports, identity made trustworthy.

A signed-in Claude Code sends its OTLP/HTTP exports (protobuf or OTLP/JSON,
optionally gzip) to the gateway. The relay decodes them with
`opentelemetry-proto`, deletes every `user.*` and `enduser.*` attribute the
client set (resource, scope, data points, exemplars, log records, spans, span
events and links: that is where OTEL_RESOURCE_ATTRIBUTES and friends land), writes
`user.email`, `user.id` and `user.groups` of the verified session on the
resource and on every data point / log record / span, adds
`telemetry.resource_attributes`, and forwards protobuf to each
`telemetry.forward_to` destination that takes the signal.

The client always gets 200 with an empty OTLP response once its bearer is
verified: a dropped, malformed, oversize or unforwardable export is logged and
counted, never surfaced (a 4xx/5xx makes Claude Code's exporter log an error on
every flush). Without a valid bearer: 401 and nothing is forwarded.
Forwarding happens before the response (Cloud Run throttles CPU after it),
within `telemetry.forward_timeout_ms`; a destination that keeps failing is
skipped for a while (circuit breaker) so a dead collector costs nothing.
"""

from __future__ import annotations

import base64
import binascii
import threading
import time
from collections.abc import Iterable
from typing import Any

from flask import Request, Response

from common import config
from common.auth import sessions
from common.config import ForwardTo
from common.core import logs
from common.http import bodies
from common.telemetry import emit as telemetry

SIGNALS = {"/v1/metrics": "metrics", "/v1/logs": "logs", "/v1/traces": "traces"}
PROTOBUF = "application/x-protobuf"
_ID_KEYS = ("traceId", "spanId", "parentSpanId", "trace_id", "span_id", "parent_span_id")
_BREAKER_FAILURES = 5
_BREAKER_OPEN_S = 30.0
_REFUSED = frozenset({400, 413, 415, 422, 431})


class _Drop(Exception):
    """This export cannot be relayed; the reason is for the log."""


def spoofable(key: str) -> bool:
    """Attributes only the gateway may set: identity (`user.*`) and `enduser.*`."""
    lowered = key.strip().lower()
    return lowered.startswith(("user.", "enduser.")) or lowered in ("user", "enduser")


# --- decoding --------------------------------------------------------------------


def _request_class(signal: str) -> Any:
    # Lazy: the generated protobuf modules import in tens of ms.
    if signal == "metrics":
        from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import ExportMetricsServiceRequest

        return ExportMetricsServiceRequest
    if signal == "logs":
        from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest

        return ExportLogsServiceRequest
    from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

    return ExportTraceServiceRequest


def _is_json(content_type: str | None) -> bool:
    return (content_type or "").split(";")[0].strip().lower() == "application/json"


def _read_body(request: Request, limit: int) -> bytes:
    try:
        raw = bodies.read(request, limit)
        return bodies.decompress(raw, request.headers.get("Content-Encoding"), limit)
    except bodies.TooLarge as exc:
        if exc.declared is not None:
            raise _Drop(f"body of {exc.declared} bytes over telemetry.relay_max_bytes ({limit})") from None
        over = "decompressed body" if exc.inflated else "body"
        raise _Drop(f"{over} over telemetry.relay_max_bytes ({limit})") from None
    except bodies.BodyError as exc:
        raise _Drop(str(exc)) from None


def _hex_ids_to_base64(node: Any) -> Any:
    """OTLP/JSON writes trace and span ids as hex; protobuf's JSON mapping expects base64."""
    if isinstance(node, dict):
        out: dict[str, Any] = {}
        for key, value in node.items():
            if key in _ID_KEYS and isinstance(value, str):
                try:
                    out[key] = base64.b64encode(bytes.fromhex(value)).decode("ascii") if value else ""
                except ValueError:
                    raise _Drop(f"{key} is not hex") from None
            else:
                out[key] = _hex_ids_to_base64(value)
        return out
    if isinstance(node, list):
        return [_hex_ids_to_base64(item) for item in node]
    return node


def decode(signal: str, body: bytes, is_json: bool) -> Any:
    """The Export*ServiceRequest in `body` (protobuf, or OTLP/JSON)."""
    from google.protobuf import json_format
    from google.protobuf.message import DecodeError

    message = _request_class(signal)()
    if not is_json:
        try:
            message.ParseFromString(body)
        except DecodeError as exc:
            raise _Drop(f"not an OTLP protobuf export ({exc})") from None
        return message
    try:
        document = bodies.loads(body)  # bounded depth: the id rewrite and ParseDict recurse
    except (ValueError, UnicodeDecodeError) as exc:
        raise _Drop(f"not JSON ({exc})") from None
    if not isinstance(document, dict):
        raise _Drop("OTLP/JSON body is not an object")
    try:
        json_format.ParseDict(_hex_ids_to_base64(document), message, ignore_unknown_fields=True)
    except (json_format.ParseError, binascii.Error, TypeError, ValueError, RecursionError) as exc:
        raise _Drop(f"not an OTLP/JSON export ({str(exc)[:200]})") from None
    return message


# --- stamping --------------------------------------------------------------------


def _rewrite(attributes: Any, add: dict[str, str] | None = None) -> None:
    """Drop spoofable keys (and the keys we set) from a repeated KeyValue; append ours."""
    from opentelemetry.proto.common.v1.common_pb2 import KeyValue

    ours = add or {}
    keep = [kv for kv in attributes if not spoofable(kv.key) and kv.key not in ours]
    if len(keep) != len(attributes) or ours:
        copies = [KeyValue(key=kv.key, value=kv.value) for kv in keep]
        del attributes[:]
        attributes.extend(copies)
        for key, value in ours.items():
            entry = attributes.add()
            entry.key = key
            entry.value.string_value = value


def _scope_and_items(containers: Iterable[Any], items_field: str) -> Iterable[Any]:
    for scoped in containers:
        if scoped.HasField("scope"):
            _rewrite(scoped.scope.attributes)
        yield from getattr(scoped, items_field)


def stamp(signal: str, message: Any, who: dict[str, str], labels: dict[str, str]) -> int:
    """Overwrite identity everywhere in an export; returns the number of items stamped."""
    resource_add = {**labels, **who}
    stamped = 0
    if signal == "metrics":
        for resource_metrics in message.resource_metrics:
            _rewrite(resource_metrics.resource.attributes, resource_add)
            for metric in _scope_and_items(resource_metrics.scope_metrics, "metrics"):
                _rewrite(metric.metadata)
                kind = metric.WhichOneof("data")
                if kind is None:
                    continue
                for point in getattr(metric, kind).data_points:
                    _rewrite(point.attributes, who)
                    for exemplar in getattr(point, "exemplars", ()):
                        _rewrite(exemplar.filtered_attributes)
                    stamped += 1
    elif signal == "logs":
        for resource_logs in message.resource_logs:
            _rewrite(resource_logs.resource.attributes, resource_add)
            for record in _scope_and_items(resource_logs.scope_logs, "log_records"):
                _rewrite(record.attributes, who)
                stamped += 1
    else:
        for resource_spans in message.resource_spans:
            _rewrite(resource_spans.resource.attributes, resource_add)
            for span in _scope_and_items(resource_spans.scope_spans, "spans"):
                _rewrite(span.attributes, who)
                for event in span.events:
                    _rewrite(event.attributes)
                for link in span.links:
                    _rewrite(link.attributes)
                stamped += 1
    return stamped


# --- forwarding --------------------------------------------------------------------


class _Forwarder:
    """One pooled HTTP session for all destinations, and a circuit breaker per URL."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._session: Any = None
        self._failures: dict[str, int] = {}
        self._open_until: dict[str, float] = {}

    def session(self) -> Any:
        if self._session is None:
            with self._lock:
                if self._session is None:
                    import requests  # lazy: only the relay needs it here

                    self._session = requests.Session()
        return self._session

    def send(self, url: str, payload: bytes, headers: dict[str, str], timeout_s: float) -> str:
        """'delivered', 'refused' (the collector rejected the payload), 'skipped' or 'failed'."""
        now = time.monotonic()
        if self._open_until.get(url, 0.0) > now:
            return "skipped"
        try:
            response = self.session().post(url, data=payload, headers=headers, timeout=timeout_s)
            status = response.status_code
            response.close()
        except Exception as exc:
            self._failed(url, type(exc).__name__)
            return "failed"
        if 200 <= status < 300:
            self._failures.pop(url, None)
            return "delivered"
        if status in _REFUSED:
            return "refused"
        self._failed(url, f"HTTP {status}")
        return "failed"

    def _failed(self, url: str, reason: str) -> None:
        count = self._failures.get(url, 0) + 1
        self._failures[url] = count
        if count >= _BREAKER_FAILURES:
            self._open_until[url] = time.monotonic() + _BREAKER_OPEN_S
            self._failures[url] = 0
            logs.warning("telemetry destination keeps failing; skipping it", url=_safe_url(url), reason=reason)
        else:
            logs.warning("telemetry forward failed", url=_safe_url(url), reason=reason)

    def reset(self) -> None:
        self._failures.clear()
        self._open_until.clear()


_forwarder = _Forwarder()


def reset() -> None:
    """Close every destination's circuit breaker and forget its failures (tests; after a collector is fixed)."""
    _forwarder.reset()


def _safe_url(url: str) -> str:
    """A URL for the log, without userinfo."""
    scheme, sep, rest = url.partition("://")
    return scheme + sep + rest.split("@", 1)[-1] if "@" in rest.split("/", 1)[0] else url


def forward(signal: str, payload: bytes, destinations: list[ForwardTo], budget_ms: int) -> dict[str, int]:
    """Send `payload` to each destination in turn, all within `budget_ms`; outcome counts."""
    deadline = time.monotonic() + budget_ms / 1000
    outcomes: dict[str, int] = {}
    for dest in destinations:
        remaining = deadline - time.monotonic()
        if remaining <= 0.001:
            result = "failed"
        else:
            headers = {"Content-Type": PROTOBUF, **dest.headers}
            result = _forwarder.send(telemetry.signal_url(dest.url, signal), payload, headers, remaining)
        outcomes[result] = outcomes.get(result, 0) + 1
    return outcomes


def _empty(is_json: bool) -> Response:
    # An empty Export*ServiceResponse: `{}` in OTLP/JSON, zero bytes in protobuf.
    if is_json:
        return Response(b"{}", status=200, content_type="application/json")
    return Response(b"", status=200, content_type=PROTOBUF)


def relay(request: Request) -> Response:
    cfg = config.current()
    identity = sessions.authenticate(request, cfg)  # 401 before anything is read or forwarded
    signal = SIGNALS.get(request.path.rstrip("/"), "metrics")
    is_json = _is_json(request.content_type)
    destinations = [d for d in cfg.telemetry.forward_to if getattr(d, signal)]
    if not destinations:
        telemetry.count("relay_discarded")
        return _empty(is_json)
    try:
        body = _read_body(request, cfg.telemetry.relay_max_bytes)
        message = decode(signal, body, is_json)
        stamp(signal, message, telemetry.identity_attributes(identity), dict(cfg.telemetry.resource_attributes))
        payload = message.SerializeToString()
    except _Drop as exc:
        telemetry.count("relay_dropped")
        logs.warning("telemetry export dropped", signal=signal, reason=str(exc))
        return _empty(is_json)
    except Exception as exc:  # the protocol: the relay always answers 200; what it could not read is dropped
        telemetry.count("relay_dropped")
        logs.error("telemetry export dropped: unexpected error", signal=signal, error_type=type(exc).__name__)
        return _empty(is_json)
    outcomes = forward(signal, payload, destinations, cfg.telemetry.forward_timeout_ms)
    for outcome, count in outcomes.items():
        telemetry.count(f"relay_{outcome}", count)
        if outcome != "delivered":
            logs.info("telemetry export not delivered", signal=signal, outcome=outcome, destinations=count)
    return _empty(is_json)
