"""Broker bridge counters as ``troupe_broker_*`` metrics.

The bridges in :mod:`troupe.brokers` keep plain counters on their broker
(``broker.stats``: per consumer and per producer). :func:`watch_broker`
copies them into the system's metric slots whenever gauges are sampled (at
scrape time, or every second in a process-tree child), summed per
``bridge`` label: ``<stream>/<group>`` for consumers, the producer's name for
producers. Consumer lag is the largest any consumer of the group reported.

Consumers of partitioned brokers (Kafka) also report per partition
(``ConsumerStats.partitions``: objects with ``lag`` and ``in_flight``, read
duck-typed, see :class:`PartitionReport`); they go to slots
``("partition", bridge, broker, partition)``, exported as
``troupe_broker_partition_lag`` and ``troupe_broker_partition_in_flight``. A
partition's lag is the largest, its in-flight the sum, over the group's
consumers in this process; a partition no consumer holds any more reads 0.
At most :data:`MAX_PARTITIONS` partition series per bridge: partitions seen
after that are left out (logged once).

>>> from troupe.brokers import MemoryBroker
>>> broker_kind(MemoryBroker())
'memory'
"""

from __future__ import annotations

import logging
import weakref
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, Protocol

from .registry import SystemMetrics
from .stats import (
    ACKED,
    BRIDGE_DEAD_LETTERED,
    CONFIRMED,
    CONSUMED,
    IN_FLIGHT,
    LAG,
    PARTITION_IN_FLIGHT,
    PARTITION_LAG,
    PARTITION_LAG_KNOWN,
    PUBLISH_FAILED,
    PUBLISHED,
    REDELIVERED,
)
from .store import SlotStore

if TYPE_CHECKING:
    from ..system import ActorSystem

logger = logging.getLogger(__name__)

_copiers: weakref.WeakKeyDictionary[SystemMetrics, BrokerCopier] = weakref.WeakKeyDictionary()

_COLUMNS = (
    CONSUMED,
    ACKED,
    REDELIVERED,
    BRIDGE_DEAD_LETTERED,
    PUBLISHED,
    CONFIRMED,
    PUBLISH_FAILED,
    LAG,
    IN_FLIGHT,
)

#: Partition series (``troupe_broker_partition_*``) kept per bridge at most.
MAX_PARTITIONS = 256

PartitionRow = list[int]  # indexed by PARTITION_LAG, PARTITION_IN_FLIGHT, PARTITION_LAG_KNOWN


class PartitionReport(Protocol):
    """What the copier reads of one partition of a consumer (``troupe.brokers.PartitionStats``)."""

    @property
    def lag(self) -> int | None:
        """Records after the next one to hand out; None when not known yet."""

    @property
    def in_flight(self) -> int:
        """Records handed out and not settled."""


def broker_kind(broker: Any) -> str:
    """``"redis"`` for a RedisBroker, ``"memory"`` for a MemoryBroker, ..."""
    name = type(broker).__name__.lower()
    return name.removesuffix("broker") or name


class BrokerCopier:
    """Copies the ``stats`` of watched brokers into bridge slots (see the module docstring)."""

    def __init__(self, max_partitions: int = MAX_PARTITIONS) -> None:
        self._brokers: list[tuple[Any, str]] = []
        self.max_partitions = max_partitions
        self._partitions: dict[tuple[str, str], set[int]] = {}  # written so far, per bridge
        self._capped: set[tuple[str, str]] = set()

    def watch(self, broker: Any, kind: str) -> None:
        """Include ``broker`` (once)."""
        if all(b is not broker for b, _ in self._brokers):
            self._brokers.append((broker, kind))

    def rows(self) -> dict[tuple[str, str], dict[int, int]]:
        """``{(bridge, broker kind): {column: value}}`` summed over the watched brokers."""
        rows: dict[tuple[str, str], dict[int, int]] = {}
        for broker, kind in self._brokers:
            stats = broker.stats
            for (stream, group, _consumer), c in list(stats.consumers.items()):
                row = rows.setdefault((f"{stream}/{group}", kind), dict.fromkeys(_COLUMNS, 0))
                row[CONSUMED] += c.delivered
                row[ACKED] += c.acked
                row[REDELIVERED] += c.redelivered
                row[BRIDGE_DEAD_LETTERED] += c.dead_lettered
                row[IN_FLIGHT] += c.in_flight
                row[LAG] = max(row[LAG], c.lag or 0)
            for name, p in list(stats.producers.items()):
                row = rows.setdefault((name, kind), dict.fromkeys(_COLUMNS, 0))
                row[PUBLISHED] += p.published + p.failed
                row[CONFIRMED] += p.published
                row[PUBLISH_FAILED] += p.failed
        return rows

    def partition_rows(self) -> dict[tuple[str, str], dict[int, PartitionRow]]:
        """``{(bridge, broker kind): {partition: [lag, in_flight, lag_known]}}`` now."""
        rows: dict[tuple[str, str], dict[int, PartitionRow]] = {}
        for broker, kind in self._brokers:
            for (stream, group, _consumer), c in list(broker.stats.consumers.items()):
                parts: Mapping[int, PartitionReport] = getattr(c, "partitions", None) or {}
                if not parts:
                    continue
                bridge = rows.setdefault((f"{stream}/{group}", kind), {})
                for partition, p in list(parts.items()):
                    row = bridge.setdefault(int(partition), [0, 0, 0])
                    if p.lag is not None:
                        row[PARTITION_LAG] = max(row[PARTITION_LAG], p.lag)
                        row[PARTITION_LAG_KNOWN] = 1
                    row[PARTITION_IN_FLIGHT] += p.in_flight
        return rows

    def __call__(self, store: SlotStore) -> None:
        for (bridge, kind), row in self.rows().items():
            slot = store.slot(("bridge", bridge, kind))
            if slot is None:
                continue
            for column, value in row.items():
                slot.values[column] = value
        self._copy_partitions(store)

    def _copy_partitions(self, store: SlotStore) -> None:
        now = self.partition_rows()
        for name in now.keys() - self._partitions.keys():
            self._partitions[name] = set()
        for name, written in self._partitions.items():
            bridge, kind = name
            current = now.get(name, {})
            for partition in sorted(written | current.keys()):
                if partition not in written:
                    if len(written) >= self.max_partitions:
                        if name not in self._capped:
                            self._capped.add(name)
                            logger.warning(
                                "bridge %s has more than %d partitions; the rest are not"
                                " exported per partition",
                                bridge,
                                self.max_partitions,
                            )
                        continue
                    written.add(partition)
                slot = store.slot(("partition", bridge, kind, str(partition)))
                if slot is None:
                    continue
                values = current.get(partition, [0, 0, 0])  # not held any more: 0
                slot.values[PARTITION_LAG] = values[PARTITION_LAG]
                slot.values[PARTITION_IN_FLIGHT] = values[PARTITION_IN_FLIGHT]
                slot.values[PARTITION_LAG_KNOWN] = values[PARTITION_LAG_KNOWN]


def watch_broker(system: ActorSystem, broker: Any) -> None:
    """Export ``broker.stats`` (its bridges' counters) with ``system``'s metrics.

    Call it once per broker, e.g. where the bridges are spawned; a no-op when
    the system's metrics are off. The bridge rows it fills are its own: do not
    also count them through ``bridge_stats`` under the same name.
    """
    metrics = system.metrics
    if metrics is None:
        return
    copier = _copiers.get(metrics)
    if copier is None:
        copier = _copiers[metrics] = BrokerCopier()
        metrics.add_copier(copier)
    copier.watch(broker, broker_kind(broker))
