"""A tiny OTLP/HTTP collector for tests: decodes what it receives with opentelemetry-proto.

Modes: `ok` (200 + empty protobuf response), `hang` (accepts, reads, never
answers until stopped), or any HTTP status to answer with.
"""

from __future__ import annotations

import gzip
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest
from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import ExportMetricsServiceRequest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

_CLASSES: dict[str, Any] = {
    "/v1/metrics": ExportMetricsServiceRequest,
    "/v1/logs": ExportLogsServiceRequest,
    "/v1/traces": ExportTraceServiceRequest,
}


class Receiver:
    def __init__(self, mode: str | int = "ok") -> None:
        self.mode = mode
        self.received: list[tuple[str, Any, dict[str, str]]] = []
        self.lock = threading.Lock()
        self.release = threading.Event()
        self.arrived = threading.Condition(self.lock)
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                pass

            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length)
                if receiver.mode == "hang":
                    receiver.release.wait(30)
                    return
                if isinstance(receiver.mode, int):
                    self.send_response(receiver.mode)
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                if self.headers.get("Content-Encoding") == "gzip":
                    body = gzip.decompress(body)
                message = _CLASSES[self.path]()
                message.ParseFromString(body)
                with receiver.arrived:
                    receiver.received.append((self.path, message, dict(self.headers.items())))
                    receiver.arrived.notify_all()
                self.send_response(200)
                self.send_header("Content-Type", "application/x-protobuf")
                self.send_header("Content-Length", "0")
                self.end_headers()

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_port}"

    def wait_for(self, count: int = 1, timeout: float = 5.0) -> list[tuple[str, Any, dict[str, str]]]:
        with self.arrived:
            self.arrived.wait_for(lambda: len(self.received) >= count, timeout)
            return list(self.received)

    def metrics(self) -> list[Any]:
        with self.lock:
            return [m for path, m, _ in self.received if path == "/v1/metrics"]


@contextmanager
def otlp_receiver(mode: str | int = "ok") -> Iterator[Receiver]:
    receiver = Receiver(mode)
    receiver.thread.start()
    try:
        yield receiver
    finally:
        receiver.release.set()
        receiver.server.shutdown()
        receiver.server.server_close()


def attrs(kvs: Any) -> dict[str, Any]:
    """A repeated KeyValue as a dict of plain values."""
    out: dict[str, Any] = {}
    for kv in kvs:
        which = kv.value.WhichOneof("value")
        out[kv.key] = getattr(kv.value, which) if which else None
    return out


def data_points(requests: list[Any], name: str) -> list[tuple[dict[str, Any], dict[str, Any], float]]:
    """(resource attributes, point attributes, value) of every point of metric `name`."""
    found = []
    for request in requests:
        for rm in request.resource_metrics:
            resource = attrs(rm.resource.attributes)
            for sm in rm.scope_metrics:
                for metric in sm.metrics:
                    if metric.name != name:
                        continue
                    kind = metric.WhichOneof("data")
                    for point in getattr(metric, kind).data_points:
                        if kind in ("sum", "gauge"):
                            value = point.as_int if point.WhichOneof("value") == "as_int" else point.as_double
                        else:
                            value = point.count
                        found.append((resource, attrs(point.attributes), value))
    return found
