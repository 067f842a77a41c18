"""Runtime metrics: plain integer counters on the dispatch path, exported on scrape.

One home for everything metrics:

- :mod:`~troupe.metrics.stats`: the rows of counters the dispatcher bumps
  (:class:`ActorStats`, :class:`BridgeStats`) and their column constants;
- :mod:`~troupe.metrics.registry`: :class:`SystemMetrics`, one ActorSystem's
  groups (labels bounded), dead-letter reasons and bridges;
- :mod:`~troupe.metrics.store`: the slots those rows live in, in memory or in
  a process tree's shared files;
- :mod:`~troupe.metrics.export`: the Prometheus collector and the ``/metrics``
  endpoint (:class:`MetricsEndpoint`);
- :mod:`~troupe.metrics.brokers`: :func:`watch_broker`, a broker's bridge
  counters as ``troupe_broker_*``.

The dispatcher counts handler calls per dispatch turn, with one or a few
``perf_counter`` reads (see ActorStats); the Prometheus side turns the
integers into metric families only when scraped, so no prometheus-client call
runs per message. Process-tree hooks (children report to one endpoint) live
above the core, in :mod:`troupe.supervisors.process_metrics`.

>>> from troupe.metrics import BUCKETS, SystemMetrics, bridge_stats
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from .registry import DEFAULT_LABEL_LIMIT, SystemMetrics, bridge_stats, group_label
from .stats import (
    ACKED,
    ACTOR_GAUGES,
    BRIDGE_DEAD_LETTERED,
    BRIDGE_GAUGES,
    BUCKET0,
    BUCKETS,
    CONFIRMED,
    CONSUMED,
    DEAD_LETTERED,
    DEPTH,
    DROPPED,
    ESCALATIONS,
    FAILED,
    FAST_BOUND,
    IN_FLIGHT,
    LABEL_CHARS,
    LAG,
    LAG_BUCKET0,
    LAG_BUCKETS,
    LAG_SUM_NS,
    LIVE,
    OTHER,
    PID,
    PUBLISH_FAILED,
    PUBLISHED,
    REASON_LIMIT,
    REDELIVERED,
    RESTARTS,
    STARTED_NS,
    SUM_NS,
    ActorStats,
    BridgeStats,
)
from .store import Key

if TYPE_CHECKING:
    from .brokers import watch_broker
    from .export import MetricsEndpoint, MetricsServer, TroupeCollector, serve

# Imported on first use: prometheus-client loads only when something exports.
_LAZY = {
    "MetricsEndpoint": "export",
    "MetricsServer": "export",
    "TroupeCollector": "export",
    "serve": "export",
    "watch_broker": "brokers",
}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(f"{__name__}.{module}"), name)


__all__ = [
    "ACKED",
    "ACTOR_GAUGES",
    "BRIDGE_DEAD_LETTERED",
    "BRIDGE_GAUGES",
    "BUCKET0",
    "BUCKETS",
    "CONFIRMED",
    "CONSUMED",
    "DEAD_LETTERED",
    "DEFAULT_LABEL_LIMIT",
    "DEPTH",
    "DROPPED",
    "ESCALATIONS",
    "FAILED",
    "FAST_BOUND",
    "IN_FLIGHT",
    "LABEL_CHARS",
    "LAG",
    "LAG_BUCKET0",
    "LAG_BUCKETS",
    "LAG_SUM_NS",
    "LIVE",
    "OTHER",
    "PID",
    "PUBLISHED",
    "PUBLISH_FAILED",
    "REASON_LIMIT",
    "REDELIVERED",
    "RESTARTS",
    "STARTED_NS",
    "SUM_NS",
    "ActorStats",
    "BridgeStats",
    "Key",
    "MetricsEndpoint",
    "MetricsServer",
    "SystemMetrics",
    "TroupeCollector",
    "bridge_stats",
    "group_label",
    "serve",
    "watch_broker",
]
