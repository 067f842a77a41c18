"""The metrics of one ActorSystem: its actor groups, dead-letter reasons and bridges.

Every actor belongs to a *metrics group* named by its label: the actor's
``metrics_label`` (class attribute or ``spawn(..., metrics_label=)``), else
its name when it was given one, else its class name (auto-named actors such
as pooled children, ``Worker-17``, share their class's label). At most
``label_limit`` labels come from names; past that, actors are labelled by
class (up to twice the limit in all), then ``_other``: cardinality stays bounded.
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from ..dead_letters import REASONS
from .stats import (
    DEPTH,
    LABEL_CHARS,
    LIVE,
    OTHER,
    PID,
    REASON_LIMIT,
    STARTED_NS,
    ActorStats,
    BridgeStats,
    observe_lag,
    unused_counts,
)
from .store import ENV_DIR, Slot, SlotSnapshot, SlotStore

if TYPE_CHECKING:
    from ..dead_letters import DeadLetter
    from ..system import ActorSystem

logger = logging.getLogger(__name__)

DEFAULT_LABEL_LIMIT = 500


class SystemMetrics:
    """The metrics of one ActorSystem: its groups, dead letters and bridges.

    Made by the system when ``metrics=True`` (the default). In a process-tree
    child (``TROUPE_METRICS_DIR`` set) the values live in a file the tree's
    root reads; otherwise in memory.
    """

    def __init__(
        self,
        system: ActorSystem,
        *,
        label_limit: int = DEFAULT_LABEL_LIMIT,
        store: SlotStore | None = None,
    ) -> None:
        self.system = system
        self.label_limit = label_limit
        self.store = store if store is not None else _store_for(system.name)
        self._groups: dict[str, ActorStats] = {}
        self._reasons: dict[str, Slot | None] = {}
        self._sampler: asyncio.TimerHandle | None = None
        self._copiers: list[Callable[[SlotStore], None]] = []
        self.process_name = system.name
        process = self.store.slot(("process", self.process_name))
        if process is not None:
            process.values[STARTED_NS] = time.time_ns()
            process.values[PID] = os.getpid()
        for reason in REASONS:  # exported at 0 before the first dead letter
            self._reasons[reason] = self.store.slot(("dead_letters", reason))
        self._unsubscribe = system.dead_letters.subscribe(self._dead_letter)
        loop = self.store.slot(("loop", system.name[:LABEL_CHARS]))
        self._loop_lag = loop.values if loop is not None else unused_counts()

    @property
    def file_backed(self) -> bool:
        """True when the values live in a process-tree file."""
        return self.store.path is not None

    # -- groups ------------------------------------------------------------------------

    def label_for(self, name: str, factory: Any, named: bool, explicit: str | None) -> str:
        """The group label of an actor (see the module docstring)."""
        kind = str(getattr(factory, "__name__", None) or type(factory).__name__)
        kind = kind[:LABEL_CHARS]
        label = str(
            explicit or getattr(factory, "metrics_label", None) or (name if named else kind)
        )[:LABEL_CHARS]
        groups = self._groups
        if label in groups or len(groups) < self.label_limit:
            return label
        if kind in groups or len(groups) < 2 * self.label_limit:
            return kind  # class names are bounded by the code
        return OTHER

    def stats_for(
        self, name: str, factory: Any, *, named: bool, explicit: str | None = None
    ) -> ActorStats:
        """The group an actor's counters go to (made on first use)."""
        label = self.label_for(name, factory, named, explicit)
        stats = self._groups.get(label)
        if stats is None:
            slot = self.store.slot(("actor", label))
            counts = slot.values if slot is not None else self._overflow_counts()
            stats = self._groups[label] = ActorStats(label, counts)
        return stats

    def _overflow_counts(self) -> memoryview:
        other = self._groups.get(OTHER)
        if other is not None:
            return other.counts
        logger.warning("metrics store is full; further actor groups are not exported")
        return unused_counts()

    def groups(self) -> list[ActorStats]:
        """Every group made so far."""
        return list(self._groups.values())

    def group(self, label: str) -> ActorStats | None:
        """The group called ``label``, if any actor had it."""
        return self._groups.get(label)

    # -- events ------------------------------------------------------------------------

    def _dead_letter(self, letter: DeadLetter) -> None:
        reasons = self._reasons
        slot = reasons.get(letter.reason)
        if slot is None:
            reason = letter.reason[:LABEL_CHARS] if len(reasons) < REASON_LIMIT else OTHER
            slot = reasons.get(reason)
            if slot is None:
                slot = reasons[reason] = self.store.slot(("dead_letters", reason))
        if slot is not None:
            slot.values[0] += 1

    def loop_lag(self, seconds: float) -> None:
        """Count one lateness of the system's loop-lag timer (``troupe_loop_lag_seconds``)."""
        observe_lag(self._loop_lag, seconds)

    def bridge(self, name: str, broker: str) -> BridgeStats:
        """The counters of the broker bridge ``name`` (``broker``: redis, kafka, ...)."""
        slot = self.store.slot(("bridge", name[:LABEL_CHARS], broker[:LABEL_CHARS]))
        return BridgeStats(name, broker, slot.values if slot is not None else unused_counts())

    # -- gauges ------------------------------------------------------------------------

    def sample_gauges(self) -> None:
        """Write mailbox depth and live-actor counts into the groups (any thread)."""
        depth: dict[str, int] = {}
        live: dict[str, int] = {}
        for cell in self.system.cells():
            stats = cell.metrics
            if stats is None:
                continue
            label = stats.label
            depth[label] = depth.get(label, 0) + len(cell.mailbox)
            live[label] = live.get(label, 0) + 1
        for label, stats in list(self._groups.items()):
            stats.counts[DEPTH] = depth.get(label, 0)
            stats.counts[LIVE] = live.get(label, 0)
        for copy in list(self._copiers):
            try:
                copy(self.store)
            except Exception:
                logger.exception("metrics copier %r failed", copy)

    def add_copier(self, copy: Callable[[SlotStore], None]) -> None:
        """Run ``copy(store)`` whenever gauges are sampled: for counters kept elsewhere
        (e.g. a broker's stats) that should be written into slots."""
        self._copiers.append(copy)

    def snapshots(self) -> list[SlotSnapshot]:
        """Every slot's current values (gauges sampled now)."""
        self.sample_gauges()
        return [SlotSnapshot(s.key, s.values.tolist(), True) for s in self.store.slots()]

    def start_sampler(self, loop: asyncio.AbstractEventLoop, interval: float = 1.0) -> None:
        """Re-sample gauges every ``interval`` wall-clock seconds (for file-backed stores,
        which the tree's root reads without running code in this process)."""

        def tick() -> None:
            self.sample_gauges()
            self._sampler = loop.call_later(interval, tick)

        self.stop_sampler()
        tick()

    def stop_sampler(self) -> None:
        """Stop the periodic gauge sampling."""
        if self._sampler is not None:
            self._sampler.cancel()
            self._sampler = None

    def close(self) -> None:
        """Stop counting dead letters and release the store (the file stays for the root)."""
        self.stop_sampler()
        self._unsubscribe()
        self.sample_gauges()
        self.store.close()


def _store_for(system_name: str) -> SlotStore:
    directory = os.environ.get(ENV_DIR)
    if directory and os.path.isdir(directory):
        try:
            return SlotStore.create_file(directory, system_name)
        except OSError as exc:
            logger.warning(
                "cannot write metrics to %s (%s); keeping them in memory", directory, exc
            )
    return SlotStore()


def bridge_stats(system: ActorSystem, name: str, broker: str) -> BridgeStats:
    """Counters for a broker bridge; a detached (unexported) set when metrics are off."""
    metrics = system.metrics
    if metrics is None:
        return BridgeStats(name, broker, unused_counts())
    return metrics.bridge(name, broker)


def group_label(ref_or_cell: Any) -> str | None:
    """The metrics label of an actor (a ref or a cell), or None when metrics are off."""
    cell = getattr(ref_or_cell, "_cell", ref_or_cell)
    stats = getattr(cell, "metrics", None)
    return stats.label if stats is not None else None
