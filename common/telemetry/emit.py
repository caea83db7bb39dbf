"""The gateway's own metrics, stamped with the verified identity, over OTLP/HTTP.

`record()` is called by `common.proxy.metering.finish` once per metered request. It
adds Claude Code's metric names, so dashboards built for Claude Code work on
the gateway's figures too:

- `claude_code.token.usage` (tokens; `type` = input | output | cacheRead |
  cacheCreation, `model`, `upstream`, `user.email`, `user.id`, `user.groups`),
- `claude_code.cost.usage` (USD, list price, same identity attributes),

and the gateway's own `claude_gateway.requests` (count),
`claude_gateway.request.duration` and `claude_gateway.time_to_first_byte`
(histograms, ms). Identity comes only from `info.identity`, the verified
session: never from anything the client sent.

Delivery: the OpenTelemetry SDK's MeterProvider with the OTLP/HTTP protobuf
exporter to `telemetry.collector`. Cloud Run throttles the CPU once a
response is sent, so a background export timer cannot be relied on; instead
the request that finds the last flush older than `telemetry.flush_interval_ms`
flushes before it returns (`force_flush`), bounded by `flush_timeout_ms`.
Deltas recorded in between stay in memory and go with the next flush (or at
shutdown: the SDK flushes at exit). After a failed flush (collector down),
requests stop flushing for `_FAILURE_BACKOFF_S`; a background thread keeps
trying meanwhile. A request is therefore never slowed by more than the flush
timeout and never fails because of telemetry. The SDK is imported on first use
(it costs ~90 ms), so the messages function's cold start does not pay it.
"""

from __future__ import annotations

import atexit
import threading
import time
from typing import TYPE_CHECKING, Any

from common.config import Config, Telemetry
from common.core import logs

if TYPE_CHECKING:
    from common.core.usage import RequestInfo, Usage

SERVICE_NAME = "claude-gateway"
_FAILURE_BACKOFF_S = 30.0
_BACKGROUND_MIN_S = 1.0
# The exporter's own deadline leaves a little of the flush budget for collecting
# and encoding, so the whole flush stays within `flush_timeout_ms`.
_EXPORT_SHARE = 0.85


def signal_url(endpoint: str, signal: str) -> str:
    """`https://otel.example.com` -> `https://otel.example.com/v1/metrics` (a full signal URL is kept)."""
    base = endpoint.rstrip("/")
    return base if base.endswith(f"/v1/{signal}") else f"{base}/v1/{signal}"


def identity_attributes(identity: Any) -> dict[str, str]:
    """The attributes that say who: from a verified `Identity` only."""
    attributes = {"user.email": identity.email, "user.id": identity.sub}
    if identity.groups:
        # A comma-joined string, as Claude Code itself stamps user.groups (and
        # omits it without groups): metric labels are strings, not arrays.
        attributes["user.groups"] = ",".join(identity.groups)
    return attributes


class Pipeline:
    """One MeterProvider + OTLP exporter for one `telemetry` section."""

    def __init__(self, settings: Telemetry) -> None:
        # Lazy: the SDK and exporter import in ~90 ms; cold start must not pay it.
        from opentelemetry.exporter.otlp.proto.http.metric_exporter import OTLPMetricExporter
        from opentelemetry.sdk.metrics import Counter, Histogram, MeterProvider
        from opentelemetry.sdk.metrics.export import (
            AggregationTemporality,
            MetricExporter,
            MetricExportResult,
            PeriodicExportingMetricReader,
        )
        from opentelemetry.sdk.resources import Resource

        assert settings.collector is not None
        self.settings = settings
        temporality = (
            AggregationTemporality.DELTA if settings.temporality == "delta" else AggregationTemporality.CUMULATIVE
        )
        timeout_s = max(settings.flush_timeout_ms, 1) / 1000
        inner = OTLPMetricExporter(
            endpoint=signal_url(settings.collector.endpoint, "metrics"),
            headers=dict(settings.collector.headers),
            timeout=timeout_s * _EXPORT_SHARE,
            preferred_temporality={Counter: temporality, Histogram: temporality},
        )
        outcome = self  # the watcher reports each export's result here

        class _Watched(MetricExporter):
            """Delegates to the OTLP exporter and remembers whether the last export worked."""

            def __init__(self) -> None:
                super().__init__(
                    preferred_temporality=inner._preferred_temporality,
                    preferred_aggregation=inner._preferred_aggregation,
                )

            def export(self, metrics_data: Any, timeout_millis: float = 10_000, **kwargs: Any) -> Any:
                try:
                    result = inner.export(metrics_data, timeout_millis=timeout_millis, **kwargs)
                except Exception as exc:  # an exporter bug must not reach a request
                    logs.warning("telemetry export raised", error=type(exc).__name__)
                    result = MetricExportResult.FAILURE
                outcome.last_ok = result == MetricExportResult.SUCCESS
                return result

            def force_flush(self, timeout_millis: float = 10_000) -> bool:
                return True

            def shutdown(self, timeout_millis: float = 30_000, **kwargs: Any) -> None:
                inner.shutdown(timeout_millis=timeout_millis)

        # No export timer (interval inf): flushes happen in requests and in our own thread.
        self.reader = PeriodicExportingMetricReader(
            _Watched(), export_interval_millis=float("inf"), export_timeout_millis=settings.flush_timeout_ms
        )
        resource = Resource.create({"service.name": SERVICE_NAME, **settings.resource_attributes})
        self.provider = MeterProvider(resource=resource, metric_readers=[self.reader])
        meter = self.provider.get_meter("claude-gateway")
        self.tokens = meter.create_counter(
            "claude_code.token.usage", unit="tokens", description="Tokens used, by type, as the upstream reported them"
        )
        self.cost = meter.create_counter(
            "claude_code.cost.usage", unit="USD", description="Cost of the request at list price"
        )
        self.requests = meter.create_counter(
            "claude_gateway.requests", unit="{request}", description="Metered requests, by model, upstream and status"
        )
        self.duration = meter.create_histogram(
            "claude_gateway.request.duration", unit="ms", description="Request start to the upstream's last byte"
        )
        self.first_byte = meter.create_histogram(
            "claude_gateway.time_to_first_byte", unit="ms", description="Request start to the upstream's first byte"
        )
        self.last_ok = True
        self._sums: dict[tuple[Any, ...], float] = {}
        self._sums_lock = threading.Lock()
        self._flush_lock = threading.Lock()
        self._next_flush = 0.0
        self._dirty = False
        self._stopped = threading.Event()
        self._thread = threading.Thread(target=self._background, name="telemetry-flush", daemon=True)
        self._thread.start()
        # The SDK flushes its provider at exit; our sums must reach it first (atexit is LIFO).
        atexit.register(self._drain_sums)

    def record(
        self, info: RequestInfo, usage: Usage, cost_micros: int, status: int, first_byte_ms: float | None
    ) -> None:
        ident = info.identity
        who = (ident.email, ident.sub, ",".join(ident.groups), info.model, info.upstream)
        sums: list[tuple[tuple[Any, ...], float]] = []
        if info.endpoint == "messages":
            for kind, tokens in (
                ("input", usage.input_tokens),
                ("output", usage.output_tokens),
                ("cacheRead", usage.cache_read_input_tokens),
                ("cacheCreation", usage.cache_creation_input_tokens),
            ):
                if tokens > 0:
                    sums.append((("tokens", kind, *who), tokens))
            if cost_micros > 0:
                sums.append((("cost", None, *who), cost_micros / 1_000_000))
        sums.append((("requests", (info.endpoint, status), *who), 1))
        # Counters are summed here and handed to the SDK once per attribute set
        # per flush: the SDK costs ~15-30 us per add (attribute checks, hashing).
        with self._sums_lock:
            pending = self._sums
            for key, value in sums:
                pending[key] = pending.get(key, 0) + value
        outcome: dict[str, Any] = {
            "model": info.model,
            "upstream": info.upstream,
            "endpoint": info.endpoint,
            "status": status,
        }
        self.duration.record((time.monotonic() - info.started) * 1000, outcome)
        if first_byte_ms is not None:
            self.first_byte.record(first_byte_ms, outcome)
        self._dirty = True

    def _drain_sums(self) -> None:
        """Move the summed counters into the SDK instruments (just before an export)."""
        with self._sums_lock:
            pending, self._sums = self._sums, {}
        for (name, detail, email, sub, groups, model, upstream), value in pending.items():
            attributes: dict[str, Any] = {"user.email": email, "user.id": sub}
            if groups:
                attributes["user.groups"] = groups
            attributes["model"] = model
            attributes["upstream"] = upstream
            if name == "tokens":
                self.tokens.add(value, {**attributes, "type": detail})
            elif name == "cost":
                self.cost.add(value, attributes)
            else:
                endpoint, status = detail
                self.requests.add(value, {**attributes, "endpoint": endpoint, "status": status})

    def flush_if_due(self) -> None:
        """Flush now if the interval has passed and no other thread is flushing."""
        if not self._dirty or time.monotonic() < self._next_flush:
            return
        self.flush()

    def flush(self) -> bool:
        if not self._flush_lock.acquire(blocking=False):
            return True  # another thread's flush is on its way
        try:
            started = time.monotonic()
            self._dirty = False
            self._drain_sums()
            self.reader.force_flush(timeout_millis=self.settings.flush_timeout_ms)
            interval = self.settings.flush_interval_ms / 1000
            if self.last_ok:
                self._next_flush = started + interval
            else:
                count("flush_failures")
                self._dirty = True  # delta points of a failed export are gone; cumulative ones return
                self._next_flush = started + max(interval, _FAILURE_BACKOFF_S)
                logs.warning(
                    "telemetry collector unreachable; requests stop flushing for a while",
                    backoff_s=_FAILURE_BACKOFF_S,
                )
            return self.last_ok
        finally:
            self._flush_lock.release()

    def _background(self) -> None:
        # Catches what requests leave pending (a quiet instance, a failing collector).
        period = max(self.settings.flush_interval_ms / 1000, _BACKGROUND_MIN_S)
        while not self._stopped.wait(period):
            if self._dirty:
                try:
                    self.flush()
                except Exception as exc:
                    logs.warning("telemetry background flush failed", error=type(exc).__name__)

    def shutdown(self) -> None:
        self._stopped.set()
        try:
            self._drain_sums()
            self.provider.shutdown()
        except Exception as exc:
            logs.warning("telemetry shutdown failed", error=type(exc).__name__)


# Lifetime: one pipeline per instance, keyed by the `telemetry` section's value, not the config
# version, so a reload that leaves `telemetry` alone keeps its exporter and unflushed sums.
_lock = threading.Lock()
_build_lock = threading.Lock()
_pipeline: Pipeline | None = None
_pipeline_key: Telemetry | None = None
_counts: dict[str, int] = {}
# Requests that finished while the SDK was still loading (first requests of an
# instance): replayed into the pipeline once it is built.
_EARLY_MAX = 10_000
_early: list[tuple[Telemetry, Any, Any, int, int, float | None]] = []
_building: Telemetry | None = None


def count(name: str, by: int = 1) -> None:
    _counts[name] = _counts.get(name, 0) + by


def stats() -> dict[str, int]:
    """Counters of this instance (records, record errors, flush failures, relay outcomes)."""
    return dict(_counts)


def _current(settings: Telemetry) -> Pipeline | None:
    current = _pipeline
    if current is not None and (_pipeline_key is settings or _pipeline_key == settings):
        return current
    return None


def running(cfg: Config) -> bool:
    """Is the pipeline of `cfg.telemetry` up? (It is built by the first metered request, in a thread.)"""
    return _current(cfg.telemetry) is not None


def pipeline(cfg: Config) -> Pipeline | None:
    """The pipeline of `cfg.telemetry`, built now if needed; None when no collector is configured."""
    global _pipeline, _pipeline_key
    settings = cfg.telemetry
    if settings.collector is None:
        return None
    found = _current(settings)
    if found is not None:
        return found
    with _build_lock:  # one builder at a time; requests never wait on this lock
        found = _current(settings)
        if found is not None:
            return found
        built = Pipeline(settings)
        with _lock:
            old, _pipeline, _pipeline_key = _pipeline, built, settings
        if old is not None:
            # The old provider flushes what it holds; no request waits for it.
            threading.Thread(target=old.shutdown, name="telemetry-shutdown", daemon=True).start()
        return built


def _build_then_replay(cfg: Config) -> None:
    global _building
    try:
        pipe = pipeline(cfg)
        with _lock:
            mine = [entry for entry in _early if entry[0] == cfg.telemetry]
            _early[:] = [entry for entry in _early if entry[0] != cfg.telemetry]
        if pipe is not None:
            for _, info, usage, cost_micros, status, first_byte_ms in mine:
                pipe.record(info, usage, cost_micros, status, first_byte_ms)
            pipe.flush()
    except Exception as exc:
        count("record_errors")
        logs.warning("telemetry pipeline could not start", error=type(exc).__name__, detail=str(exc)[:200])
    finally:
        with _lock:
            _building = None


def record(
    cfg: Config, info: RequestInfo, usage: Usage, cost_micros: int, status: int, first_byte_ms: float | None
) -> None:
    """Record one metered request and flush if due. Never raises; no collector -> nothing.

    The first request of an instance does not wait for the SDK to load (~300 ms
    cold): it starts loading it in a thread and leaves its figures to be
    replayed and flushed as soon as the pipeline is up.
    """
    global _building
    settings = cfg.telemetry
    if settings.collector is None:
        return
    try:
        pipe = _current(settings)
        if pipe is None:
            start = False
            with _lock:
                # Checked again under the lock the replay collects under: no entry is left behind.
                pipe = _current(settings)
                if pipe is None:
                    if len(_early) < _EARLY_MAX:
                        _early.append((settings, info, usage, cost_micros, status, first_byte_ms))
                    else:
                        count("dropped_while_starting")
                    start = _building is None or _building != settings
                    if start:
                        _building = settings
            if pipe is None:
                if start:
                    threading.Thread(
                        target=_build_then_replay, args=(cfg,), name="telemetry-start", daemon=True
                    ).start()
                count("recorded")
                return
        pipe.record(info, usage, cost_micros, status, first_byte_ms)
        count("recorded")
        pipe.flush_if_due()
    except Exception as exc:  # telemetry must never fail a request
        count("record_errors")
        logs.warning("telemetry record failed", error=type(exc).__name__, detail=str(exc)[:200])


def flush(cfg: Config) -> bool:
    """Flush now (tests, shutdown hooks); True when the export succeeded or nothing was configured."""
    pipe = pipeline(cfg)
    return True if pipe is None else pipe.flush()


def reset() -> None:
    """Shut the pipeline down and forget it (tests; a config without a collector)."""
    global _pipeline, _pipeline_key, _building
    with _lock:
        old, _pipeline, _pipeline_key, _building = _pipeline, None, None, None
        _early.clear()
    if old is not None:
        old.shutdown()
    _counts.clear()
