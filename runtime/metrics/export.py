"""Prometheus export: a collector over troupe's counters and the ``/metrics`` endpoint.

:class:`TroupeCollector` turns slot snapshots (from this process's systems
and, in a process tree, from every child's file) into metric families when
Prometheus scrapes; values with the same labels are summed, so a tree shows
one series per actor group however many processes ran it. Gauges of ended
processes are left out; their counters stay.

Metric families (all prefixed ``troupe_``):

- ``messages_total{actor,outcome}``: outcome ``ok``, ``failed``,
  ``dead_lettered``, ``dropped``
- ``handler_seconds{actor}``: histogram of handler durations
- ``mailbox_depth{actor}``, ``actors{actor}``: gauges
- ``restarts_total{actor}``, ``escalations_total{actor}``
- ``dead_letters_total{reason}``
- ``broker_consumed_total``, ``broker_acked_total``, ``broker_redeliveries_total``,
  ``broker_dead_lettered_total``, ``broker_published_total``,
  ``broker_publish_confirms_total``, ``broker_publish_failures_total``
  (``{bridge,broker}``); gauges ``broker_consumer_lag``, ``broker_in_flight``
- ``broker_partition_lag{bridge,broker,partition}``, ``broker_partition_in_flight{...}``:
  gauges per partition of partitioned brokers (Kafka; at most 256 partitions a bridge,
  see :mod:`troupe.metrics.brokers`); lag only once known
- ``loop_lag_seconds{system}``: histogram of how late the event loop ran a
  periodic timer (see :mod:`troupe.loop_lag`)
- ``tasks_total{task,queue,outcome}``, ``task_seconds_total{task,queue,outcome}``
  (task workers, :mod:`troupe.brokers.tasks.metrics`)
- ``process_up{process}``, ``process_starts_total{process}``,
  ``process_restarts_total{process}`` (process trees)

Needs the ``metrics`` extra (prometheus-client).
"""

from __future__ import annotations

import logging
import socket
import tempfile
import threading
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

from prometheus_client import CollectorRegistry, make_wsgi_app
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.exposition import ThreadingWSGIServer
from prometheus_client.registry import Collector

from . import stats as m
from .store import ENV_DIR, SlotSnapshot, TreeReader, remove_tree_directory

if TYPE_CHECKING:
    from .registry import SystemMetrics

logger = logging.getLogger(__name__)

Source = Callable[[], Iterable[SlotSnapshot]]

_OUTCOMES = (("failed", m.FAILED), ("dead_lettered", m.DEAD_LETTERED), ("dropped", m.DROPPED))
_BRIDGE_COUNTERS = (
    ("troupe_broker_consumed", "Messages a bridge took from its broker.", m.CONSUMED),
    ("troupe_broker_acked", "Messages acked/committed after their handler returned.", m.ACKED),
    ("troupe_broker_redeliveries", "Messages the broker delivered again.", m.REDELIVERED),
    (
        "troupe_broker_dead_lettered",
        "Messages moved to a dead-letter queue.",
        m.BRIDGE_DEAD_LETTERED,
    ),
    ("troupe_broker_published", "Messages a bridge published.", m.PUBLISHED),
    ("troupe_broker_publish_confirms", "Publishes the broker confirmed.", m.CONFIRMED),
    ("troupe_broker_publish_failures", "Publishes that failed for good.", m.PUBLISH_FAILED),
)

_GAUGES: dict[str, tuple[int, ...]] = {
    "actor": m.ACTOR_GAUGES,
    "bridge": m.BRIDGE_GAUGES,
    "partition": m.PARTITION_GAUGES,
}


@dataclass
class _Totals:
    values: list[int]
    live: bool = False
    starts: int = 0
    up: int = 0
    extra: dict[str, int] = field(default_factory=dict)


def aggregate(snapshots: Iterable[SlotSnapshot]) -> dict[tuple[str, ...], _Totals]:
    """Sum snapshots by key; gauges only from live ones; count process starts and ups."""
    totals: dict[tuple[str, ...], _Totals] = {}
    for snap in snapshots:
        kind = snap.key[0]
        gauges = _GAUGES.get(kind, ())
        values = list(snap.values)
        if not snap.live:
            for index in gauges:
                values[index] = 0
        found = totals.get(snap.key)
        if found is None:
            found = totals[snap.key] = _Totals(values, snap.live)
        else:
            found.values = [a + b for a, b in zip(found.values, values, strict=True)]
            found.live = found.live or snap.live
        if kind == "process":
            found.starts += snap.starts
            found.up += int(snap.live)
    return totals


class TroupeCollector(Collector):
    """A prometheus-client collector over troupe snapshot sources.

    >>> from prometheus_client import CollectorRegistry, generate_latest
    >>> registry = CollectorRegistry()
    >>> registry.register(TroupeCollector([]))
    >>> b"# TYPE troupe_messages_total counter" in generate_latest(registry)
    True
    """

    def __init__(self, sources: Iterable[Source]) -> None:
        self.sources: list[Source] = list(sources)
        self._lock = threading.Lock()

    def add_source(self, source: Source) -> None:
        """Include another snapshot source from the next scrape on."""
        with self._lock:
            self.sources.append(source)

    def remove_source(self, source: Source) -> None:
        """Stop including ``source``."""
        with self._lock:
            if source in self.sources:
                self.sources.remove(source)

    def _snapshots(self) -> Iterator[SlotSnapshot]:
        with self._lock:
            sources = list(self.sources)
        for source in sources:
            try:
                yield from source()
            except Exception:
                logger.exception("metrics source %r failed; skipping it this scrape", source)

    def collect(self) -> Iterator[Metric]:
        totals = aggregate(self._snapshots())
        yield from _actor_families(totals)
        yield from _dead_letter_families(totals)
        yield from _bridge_families(totals)
        yield from _loop_families(totals)
        yield from _task_families(totals)
        yield from _process_families(totals)


def _actor_families(totals: dict[tuple[str, ...], _Totals]) -> Iterator[Metric]:
    messages = CounterMetricFamily(
        "troupe_messages", "Messages per actor group and outcome.", labels=["actor", "outcome"]
    )
    seconds = HistogramMetricFamily(
        "troupe_handler_seconds", "Handler duration per actor group.", labels=["actor"]
    )
    depth = GaugeMetricFamily(
        "troupe_mailbox_depth", "Queued messages per actor group.", labels=["actor"]
    )
    live = GaugeMetricFamily("troupe_actors", "Live actors per actor group.", labels=["actor"])
    restarts = CounterMetricFamily(
        "troupe_restarts", "Actor restarts per actor group.", labels=["actor"]
    )
    escalations = CounterMetricFamily(
        "troupe_escalations",
        "Failures a supervisor in this group escalated to its own parent.",
        labels=["actor"],
    )
    for key, total in totals.items():
        if key[0] != "actor":
            continue
        label = key[1]
        v = total.values
        buckets = v[m.BUCKET0 : m.BUCKET0 + len(m.BUCKETS) + 1]
        handled = sum(buckets)
        messages.add_metric([label, "ok"], handled - v[m.FAILED])
        for outcome, index in _OUTCOMES:
            messages.add_metric([label, outcome], v[index])
        cumulative = 0
        rows: list[tuple[str, float]] = []
        for bound, count in zip((*m.BUCKETS, float("inf")), buckets, strict=True):
            cumulative += count
            rows.append((_le(bound), cumulative))
        seconds.add_metric([label], rows, sum_value=v[m.SUM_NS] / 1e9)
        if total.live:
            depth.add_metric([label], v[m.DEPTH])
            live.add_metric([label], v[m.LIVE])
        restarts.add_metric([label], v[m.RESTARTS])
        escalations.add_metric([label], v[m.ESCALATIONS])
    yield from (messages, seconds, depth, live, restarts, escalations)


def _loop_families(totals: dict[tuple[str, ...], _Totals]) -> Iterator[Metric]:
    lag = HistogramMetricFamily(
        "troupe_loop_lag_seconds",
        "How late the event loop ran a periodic timer: time it was kept busy (blocked).",
        labels=["system"],
    )
    for key, total in totals.items():
        if key[0] != "loop":
            continue
        v = total.values
        cumulative = 0
        rows: list[tuple[str, float]] = []
        counts = v[m.LAG_BUCKET0 : m.LAG_BUCKET0 + len(m.LAG_BUCKETS) + 1]
        for bound, count in zip((*m.LAG_BUCKETS, float("inf")), counts, strict=True):
            cumulative += count
            rows.append((_le(bound), cumulative))
        lag.add_metric([key[1]], rows, sum_value=v[m.LAG_SUM_NS] / 1e9)
    yield lag


def _le(bound: float) -> str:
    return "+Inf" if bound == float("inf") else repr(bound)


def _dead_letter_families(totals: dict[tuple[str, ...], _Totals]) -> Iterator[Metric]:
    family = CounterMetricFamily(
        "troupe_dead_letters", "Messages that reached no handler, by reason.", labels=["reason"]
    )
    for key, total in totals.items():
        if key[0] == "dead_letters":
            family.add_metric([key[1]], total.values[0])
    yield family


def _bridge_families(totals: dict[tuple[str, ...], _Totals]) -> Iterator[Metric]:
    bridges = [(key, t) for key, t in totals.items() if key[0] == "bridge"]
    labels = ["bridge", "broker"]
    for name, doc, index in _BRIDGE_COUNTERS:
        family = CounterMetricFamily(name, doc, labels=labels)
        for key, total in bridges:
            family.add_metric([key[1], key[2]], total.values[index])
        yield family
    lag = GaugeMetricFamily(
        "troupe_broker_consumer_lag", "Messages not yet consumed.", labels=labels
    )
    in_flight = GaugeMetricFamily(
        "troupe_broker_in_flight", "Messages delivered and not yet acked.", labels=labels
    )
    for key, total in bridges:
        if total.live:
            lag.add_metric([key[1], key[2]], total.values[m.LAG])
            in_flight.add_metric([key[1], key[2]], total.values[m.IN_FLIGHT])
    yield lag
    yield in_flight
    yield from _partition_families(totals)


def _partition_families(totals: dict[tuple[str, ...], _Totals]) -> Iterator[Metric]:
    labels = ["bridge", "broker", "partition"]
    lag = GaugeMetricFamily(
        "troupe_broker_partition_lag",
        "Records of a partition not yet handed out by its consumer (Kafka).",
        labels=labels,
    )
    in_flight = GaugeMetricFamily(
        "troupe_broker_partition_in_flight",
        "Records of a partition handed out and not yet settled (Kafka).",
        labels=labels,
    )
    for key, total in totals.items():
        if key[0] != "partition" or len(key) != 4 or not total.live:
            continue
        v = total.values
        if v[m.PARTITION_LAG_KNOWN]:
            lag.add_metric(list(key[1:]), v[m.PARTITION_LAG])
        in_flight.add_metric(list(key[1:]), v[m.PARTITION_IN_FLIGHT])
    yield lag
    yield in_flight


def _task_families(totals: dict[tuple[str, ...], _Totals]) -> Iterator[Metric]:
    # slots ("task", task, queue, outcome): [attempts, handler nanoseconds]
    labels = ["task", "queue", "outcome"]
    count = CounterMetricFamily("troupe_tasks", "Task attempts by outcome.", labels=labels)
    seconds = CounterMetricFamily(
        "troupe_task_seconds", "Seconds task handlers ran, by outcome.", labels=labels
    )
    for key, total in totals.items():
        if key[0] == "task" and len(key) == 4:
            count.add_metric(list(key[1:]), total.values[0])
            seconds.add_metric(list(key[1:]), total.values[1] / 1e9)
    yield from (count, seconds)


def _process_families(totals: dict[tuple[str, ...], _Totals]) -> Iterator[Metric]:
    up = GaugeMetricFamily(
        "troupe_process_up",
        "Live OS processes running this actor system (a process-tree child).",
        labels=["process"],
    )
    starts = CounterMetricFamily(
        "troupe_process_starts",
        "Times a process with this actor system name started.",
        labels=["process"],
    )
    restarts = CounterMetricFamily(
        "troupe_process_restarts",
        "Restarts of a process-tree child (from its supervisor, else starts after the first).",
        labels=["process"],
    )
    supervised = {key[1]: t.values for key, t in totals.items() if key[0] == "child"}
    seen: set[str] = set()
    for key, total in totals.items():
        if key[0] != "process":
            continue
        name = key[1]
        seen.add(name)
        known = supervised.get(name)
        up.add_metric([name], known[0] if known else total.up)
        starts.add_metric([name], total.starts)
        restarts.add_metric([name], known[1] if known else max(0, total.starts - 1))
    for name, values in supervised.items():
        if name not in seen:  # started, but its system has not reported (yet, or never)
            up.add_metric([name], values[0])
            restarts.add_metric([name], values[1])
    yield from (up, starts, restarts)


WSGIApp = Callable[[dict[str, Any], Callable[..., Any]], Iterable[bytes]]


class _Routes:
    """The endpoint's WSGI app: ``/metrics``, plus apps mounted beside it (the observer)."""

    def __init__(self, metrics: WSGIApp) -> None:
        self.metrics = metrics
        self.mounted: dict[str, WSGIApp] = {}

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Any:
        path = str(environ.get("PATH_INFO") or "/")
        for prefix, app in list(self.mounted.items()):
            if path == prefix or path.startswith(prefix.rstrip("/") + "/"):
                return app(environ, start_response)
        return self.metrics(environ, start_response)


def _document_app(content_type: str, render: Callable[[], bytes]) -> WSGIApp:
    """A WSGI app answering every request with ``render()`` (500 and a log line if it fails)."""

    def app(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        try:
            body = render()
        except Exception:
            logger.exception("rendering %s failed", environ.get("PATH_INFO"))
            start_response("500 Internal Server Error", [("Content-Type", "text/plain")])
            return [b"rendering the document failed; see the log\n"]
        start_response("200 OK", [("Content-Type", content_type)])
        return [body]

    return app


class MetricsServer:
    """A running ``/metrics`` HTTP endpoint; :meth:`close` stops it."""

    def __init__(
        self,
        server: WSGIServer,
        thread: threading.Thread,
        registry: CollectorRegistry,
        routes: _Routes | None = None,
    ):
        self._server = server
        self._thread = thread
        self._routes = routes
        self.registry = registry
        self.host: str = str(server.server_address[0])
        self.port: int = int(server.server_address[1])

    @property
    def url(self) -> str:
        """The endpoint's URL, e.g. ``http://127.0.0.1:9464/metrics``."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}/metrics"

    def mount(self, path: str, app: WSGIApp) -> None:
        """Serve ``app`` for ``path`` and everything under it, beside ``/metrics``
        (e.g. the observer's ``/observer``, ``/healthz``, ``/readyz``)."""
        if self._routes is None:
            raise RuntimeError("this server was not made by serve(); cannot mount apps")
        self._routes.mounted[path] = app

    def add_document(self, path: str, content_type: str, render: Callable[[], bytes]) -> None:
        """Serve ``render()`` at ``path`` too (called on the server's thread per request),
        e.g. the AsyncAPI document."""
        if not path.startswith("/") or path == "/metrics":
            raise ValueError(f"a document path starts with / and is not /metrics: {path!r}")
        self.mount(path, _document_app(content_type, render))

    def close(self) -> None:
        """Stop serving and free the port."""
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)

    def __repr__(self) -> str:
        return f"<MetricsServer {self.url}>"


class _QuietHandler(WSGIRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        """Scrapes are not worth a log line each."""


def serve(collector: Collector, port: int = 0, addr: str = "127.0.0.1") -> MetricsServer:
    """Serve ``collector`` at ``http://addr:port/metrics`` on a daemon thread.

    ``port=0`` picks a free port (see ``MetricsServer.port``). The address is
    loopback unless you pass another one (``"0.0.0.0"`` to expose it).
    """
    registry = CollectorRegistry(auto_describe=False)
    registry.register(collector)

    class Server(ThreadingWSGIServer):
        address_family = socket.AF_INET6 if ":" in addr else socket.AF_INET

    routes = _Routes(make_wsgi_app(registry))
    httpd = make_server(addr, port, routes, Server, handler_class=_QuietHandler)
    thread = threading.Thread(
        target=httpd.serve_forever,
        kwargs={"poll_interval": 0.05},  # close() returns within this
        name=f"troupe-metrics-{httpd.server_address[1]}",
        daemon=True,
    )
    thread.start()
    served = MetricsServer(httpd, thread, registry, routes)
    logger.info("metrics at %s", served.url)
    return served


class MetricsEndpoint:
    """One ``/metrics`` endpoint for this process's systems and the tree it roots.

    It creates a tree directory; child processes started with
    :meth:`environment` in their environment (a ``ProcessSupervisor`` with
    ``TreeMetricsHooks(endpoint)`` from :mod:`troupe.supervisors.process_metrics`
    does that) write their counters there, and every scrape sums this
    process's systems and every child, live or ended.

    >>> endpoint = MetricsEndpoint(port=0)
    >>> endpoint.url.startswith("http://127.0.0.1:")
    True
    >>> endpoint.close()
    """

    def __init__(
        self, port: int = 0, addr: str = "127.0.0.1", *, directory: str | Path | None = None
    ) -> None:
        self._owns_directory = directory is None
        self.directory = Path(directory or tempfile.mkdtemp(prefix="troupe-metrics-"))
        self._reader = TreeReader(self.directory, remove_ended=self._owns_directory)
        self._systems: dict[int, Source] = {}
        self._extra: list[Source] = []
        self.collector = TroupeCollector([self._tree_snapshots])
        try:
            self.server = serve(self.collector, port, addr)
        except BaseException:
            self._remove_directory()
            raise

    @property
    def url(self) -> str:
        """The endpoint's URL."""
        return self.server.url

    @property
    def port(self) -> int:
        """The port it listens on (useful with ``port=0``)."""
        return self.server.port

    def environment(self) -> dict[str, str]:
        """Environment variables that make a child process report to this endpoint."""
        return {ENV_DIR: str(self.directory)}

    def add_system(self, metrics: SystemMetrics) -> None:
        """Include an in-process system (a file-backed one is read from its file)."""
        if not metrics.file_backed:
            self.collector.add_source(metrics.snapshots)

    def add_source(self, source: Source) -> None:
        """Include another snapshot source (e.g. the process-tree hooks)."""
        self.collector.add_source(source)

    def add_document(self, path: str, content_type: str, render: Callable[[], bytes]) -> None:
        """Serve ``render()`` at ``path`` beside ``/metrics`` (an AsyncAPI document)."""
        self.server.add_document(path, content_type, render)

    def _tree_snapshots(self) -> list[SlotSnapshot]:
        return list(self._reader.snapshots())

    def close(self) -> None:
        """Stop serving; remove the tree directory when this endpoint made it."""
        self.server.close()
        self._reader.close()
        self._remove_directory()

    def _remove_directory(self) -> None:
        if self._owns_directory:
            remove_tree_directory(self.directory)

    def __repr__(self) -> str:
        return f"<MetricsEndpoint {self.url} tree={self.directory}>"
