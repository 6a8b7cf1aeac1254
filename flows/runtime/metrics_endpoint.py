"""``--metrics-port``: a run's figures as Prometheus metrics, and ``/healthz``.

``GET /metrics`` answers in Prometheus' text format, computed from the run's figures at
each scrape (see :data:`METRICS` for what is served). ``GET /healthz`` answers 200 while
the run's readers keep asking Kafka for messages, and 503 once none has for
:data:`HEALTHY_WITHIN_S` (a stuck process, for a container orchestrator's liveness
probe); a Kafka outage does not count, since readers keep polling through it.

Whatever connects, the endpoint holds at most :data:`MAX_CONNECTIONS` connections (and
threads, and descriptors) at once, closing any beyond at once, and cuts each one after
:data:`REQUEST_TIMEOUT_S`: a flood of connections cannot starve the flow of descriptors.
"""

from __future__ import annotations

import contextlib
import socket
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector, CollectorRegistry

from common.errors import ConfigError
from common.log import LOGGER
from common.metrics import PartitionFigures, RunFigures
from common.units import MICROS_PER_SECOND
from flows.runtime.status_line import LiveRun

HEALTHY_WITHIN_S = 60.0
MAX_CONNECTIONS = 16
"""Connections served at once; one more is closed as soon as it is accepted."""
REQUEST_TIMEOUT_S = 5.0
"""The longest a connection may take to send its request and read the answer."""


@dataclass(frozen=True)
class Served:
    """One metric: its name, kind (``counter`` or ``gauge``), what it measures, labels."""

    name: str
    kind: str
    help: str
    labels: tuple[str, ...]


_PARTITION = ("flow", "topic", "partition")
_TABLE = ("flow", "table")
_FLOW = ("flow",)
METRICS = (
    Served("eventlake_events", "counter", "Messages read, dead letters included", _PARTITION),
    Served("eventlake_dead_letters", "counter", "Messages that were not valid events", _PARTITION),
    Served("eventlake_gaps", "counter", "Gaps: offsets deleted before they were read", _PARTITION),
    Served("eventlake_gap_offsets", "counter", "Offsets deleted before they were read", _PARTITION),
    Served("eventlake_offset", "gauge", "The next offset to read", _PARTITION),
    Served(
        "eventlake_end_offset", "gauge", "The partition's end offset, as last fetched", _PARTITION
    ),
    Served(
        "eventlake_consumer_lag", "gauge", "Messages from the next offset to the end", _PARTITION
    ),
    Served(
        "eventlake_rows",
        "counter",
        "Rows handed to the table's sink (written at its next roll)",
        _TABLE,
    ),
    Served(
        "eventlake_late_rows", "counter", "Rows that came after their window had closed", _TABLE
    ),
    Served("eventlake_open_windows", "gauge", "Windows (sessions) open", _TABLE),
    Served(
        "eventlake_watermark_seconds",
        "gauge",
        "The table's watermark (event time, Unix seconds)",
        _TABLE,
    ),
    Served(
        "eventlake_watermark_delay_seconds",
        "gauge",
        "How far the watermark trails the clock",
        _TABLE,
    ),
    Served("eventlake_checkpoint_epoch", "gauge", "The last durable checkpoint's epoch", _FLOW),
    Served(
        "eventlake_checkpoint_timestamp_seconds",
        "gauge",
        "When it was written (Unix seconds)",
        _FLOW,
    ),
    Served("eventlake_checkpoint_age_seconds", "gauge", "How long ago it was written", _FLOW),
)
"""Every metric served (the README lists them)."""
_PARTITION_VALUES: dict[str, Callable[[PartitionFigures], int | None]] = {
    "eventlake_events": lambda part: part.events,
    "eventlake_dead_letters": lambda part: part.dead_letters,
    "eventlake_gaps": lambda part: part.gaps,
    "eventlake_gap_offsets": lambda part: part.gap_offsets,
    "eventlake_offset": lambda part: part.position,
    "eventlake_end_offset": lambda part: part.end,
    "eventlake_consumer_lag": PartitionFigures.lag,
}


def _family(served: Served) -> CounterMetricFamily | GaugeMetricFamily:
    kind = CounterMetricFamily if served.kind == "counter" else GaugeMetricFamily
    return kind(served.name, served.help, labels=served.labels)


class _RunCollector(Collector):
    """The metrics of one run, computed from its figures at each scrape."""

    def __init__(self, run: LiveRun) -> None:
        self._run = run

    def collect(self) -> Iterator[Metric]:
        figures, now = self._run.figures(), time.time()
        families = {served.name: _family(served) for served in METRICS}
        flow, topic = self._run.flow, self._run.topic
        for part, partition in sorted(figures.partitions.items()):
            for name, value_of in _PARTITION_VALUES.items():
                count = value_of(partition)
                if count is not None:
                    families[name].add_metric([flow, topic, str(part)], count)
        for table, values in _table_values(figures, now).items():
            for name, value in values.items():
                families[name].add_metric([flow, table], value)
        checkpoint = self._run.checkpoint()
        if checkpoint is not None:
            written = checkpoint.written_at.timestamp()
            families["eventlake_checkpoint_epoch"].add_metric([flow], checkpoint.epoch)
            families["eventlake_checkpoint_timestamp_seconds"].add_metric([flow], written)
            families["eventlake_checkpoint_age_seconds"].add_metric([flow], now - written)
        yield from families.values()


def _table_values(figures: RunFigures, now: float) -> dict[str, dict[str, float]]:
    """Each table's metric values (a table without windows has rows only)."""
    values: dict[str, dict[str, float]] = {}
    for table, rows in figures.table_rows().items():
        values.setdefault(table, {})["eventlake_rows"] = rows
    for name, figure in (("eventlake_late_rows", "late_rows"),
                         ("eventlake_open_windows", "open_windows")):  # fmt: skip
        for table, value in figures.per_table(figure).items():
            values.setdefault(table, {})[name] = value
    for table, watermark_us in figures.watermarks_us().items():
        seconds = watermark_us / MICROS_PER_SECOND
        values[table]["eventlake_watermark_seconds"] = seconds
        values[table]["eventlake_watermark_delay_seconds"] = now - seconds
    return values


def health(figures: RunFigures, now: float) -> str | None:
    """Why the run is unhealthy, or None if it is healthy (see the module)."""
    if figures.active_at is None or now - figures.active_at < HEALTHY_WITHIN_S:
        return None
    return f"no reader has polled Kafka for {now - figures.active_at:.0f}s"


def _handler(run: LiveRun, registry: CollectorRegistry) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # the name http.server calls
            if self.path.split("?")[0] == "/metrics":
                self._answer(200, generate_latest(registry), CONTENT_TYPE_LATEST)
            elif self.path == "/healthz":
                problem = health(run.figures(), time.time())
                self._answer(200 if problem is None else 503, f"{problem or 'ok'}\n".encode())
            else:
                self._answer(404, b"not found: try /metrics or /healthz\n")

        def _answer(self, code: int, body: bytes, kind: str = "text/plain") -> None:
            self.send_response(code)
            self.send_header("Content-Type", kind)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: object) -> None:
            """Scrapes are not worth a line each."""

    return Handler


class _BoundedServer(ThreadingHTTPServer):
    """An HTTP server with at most :data:`MAX_CONNECTIONS` connections, each cut after
    :data:`REQUEST_TIMEOUT_S` (see the module)."""

    request_queue_size = 128
    """Connections the kernel keeps waiting to be accepted (no descriptor of ours): a
    burst of them is accepted, and the extra ones closed, at once, rather than refused
    and retried by their clients a second later."""

    def __init__(self, address: tuple[str, int], handler: type[BaseHTTPRequestHandler]) -> None:
        super().__init__(address, handler)
        self._lock = threading.Lock()
        self._accepted_at: dict[socket.socket, float] = {}

    def process_request(self, request: Any, client_address: Any) -> None:
        with self._lock:
            admitted = len(self._accepted_at) < MAX_CONNECTIONS
            if admitted:
                self._accepted_at[request] = time.monotonic()
        if admitted:
            super().process_request(request, client_address)
        else:
            self.shutdown_request(request)

    def process_request_thread(self, request: Any, client_address: Any) -> None:
        try:
            super().process_request_thread(request, client_address)
        finally:  # the connection is closed by now
            with self._lock:
                del self._accepted_at[request]

    def service_actions(self) -> None:
        """Cut the connections older than :data:`REQUEST_TIMEOUT_S` (``serve_forever``
        calls this every half second); their threads then end and close them."""
        now = time.monotonic()
        with self._lock:
            overdue = [connection for connection, accepted_at in self._accepted_at.items()
                       if now - accepted_at > REQUEST_TIMEOUT_S]  # fmt: skip
        for connection in overdue:
            with contextlib.suppress(OSError):  # closed meanwhile
                connection.shutdown(socket.SHUT_RDWR)

    def handle_error(self, request: Any, client_address: Any) -> None:
        """A client that went away, or was cut, is not worth a traceback."""
        LOGGER.debug("metrics request from %s failed", client_address, exc_info=True)


@contextlib.contextmanager
def serving_metrics(host: str, port: int, run: LiveRun) -> Iterator[None]:
    """Serve ``run``'s ``/metrics`` and ``/healthz`` on ``host``:``port`` while inside;
    ConfigError at once if that address cannot be had."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(_RunCollector(run))
    try:
        server = _BoundedServer((host, port), _handler(run, registry))
    except OSError as err:
        raise ConfigError(
            f"--metrics-host {host} --metrics-port {port}: {err.strerror}; pick a free port "
            "and an address of this host (0.0.0.0: every interface), or leave "
            "--metrics-port out"
        ) from err
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield
    finally:
        server.shutdown()
        server.server_close()
