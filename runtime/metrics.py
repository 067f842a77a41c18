"""Runtime metrics: plain integer counters on the dispatch path, exported on scrape.

Every actor belongs to a *metrics group* named by its label: the actor's
``metrics_label`` (class attribute or ``spawn(..., metrics_label=)``), else
its name when it was given one, else its class name (auto-named actors such
as pooled children, ``Worker-17``, share their class's label). At most
``label_limit`` labels come from names; past that, actors are labelled by
class (up to twice the limit in all), then ``_other``: cardinality stays bounded.

A group is an :class:`ActorStats`: a row of 64-bit integers (see
:mod:`troupe.metrics_store`). The dispatcher counts handler calls into it per
dispatch turn, with one or a few ``perf_counter`` reads (see ActorStats); the
Prometheus side (:mod:`troupe.metrics_export`) turns the integers into metric
families only when scraped, so no prometheus-client call runs per message.
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
from bisect import bisect_left
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from .metrics_store import ENV_DIR, VALUES, Key, Slot, SlotSnapshot, SlotStore

if TYPE_CHECKING:
    from .dead_letters import DeadLetter
    from .system import ActorSystem

logger = logging.getLogger(__name__)

#: Upper bounds (seconds) of the handler-duration histogram; a +Inf bucket follows.
BUCKETS: tuple[float, ...] = (
    0.00005,
    0.0001,
    0.00025,
    0.0005,
    0.001,
    0.0025,
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1.0,
    2.5,
    5.0,
    10.0,
    30.0,
    60.0,
)
FAST_BOUND = BUCKETS[0]

# Values of an actor group's slot.
FAILED = 0  # handler raised
DEAD_LETTERED = 1  # addressed to the actor, went to dead letters
DROPPED = 2  # dropped by a drop_newest / drop_oldest mailbox
RESTARTS = 3
ESCALATIONS = 4
DEPTH = 5  # gauge: queued messages, summed over the group's live actors
LIVE = 6  # gauge: live actors in the group
SUM_NS = 7  # total handler time, nanoseconds
BUCKET0 = 8  # BUCKETS, then +Inf
ACTOR_GAUGES = (DEPTH, LIVE)

# Values of a broker bridge's slot (see BridgeStats).
CONSUMED = 0
ACKED = 1
REDELIVERED = 2
BRIDGE_DEAD_LETTERED = 3
PUBLISHED = 4
CONFIRMED = 5
PUBLISH_FAILED = 6
LAG = 7  # gauge
IN_FLIGHT = 8  # gauge
BRIDGE_GAUGES = (LAG, IN_FLIGHT)

# Values of a process slot: the wall-clock start time (ns) and the pid.
STARTED_NS = 0
PID = 1

DEFAULT_LABEL_LIMIT = 500
LABEL_CHARS = 48  # label values are cut to this length (keys must fit a slot)
REASON_LIMIT = 50
OTHER = "_other"

assert BUCKET0 + len(BUCKETS) + 1 <= VALUES


class ActorStats:
    """The counters of one metrics group; shared by every actor with its label.

    Handler timing costs one ``perf_counter`` read per dispatch turn while the
    group's turns finish within ``FAST_BOUND`` (then every call in the turn is
    certainly in the first bucket). When a turn overruns, that turn counts as
    its other calls being fast plus one call that took the whole turn, and the
    group times each call (one read per call) until a whole turn is fast again.
    Counts and the duration sum are exact; only the bucket of calls in such an
    overrunning turn is estimated. Failed calls are always timed on their own.
    """

    __slots__ = ("counts", "label", "time_each")

    def __init__(self, label: str, counts: memoryview) -> None:
        self.label = label
        self.counts = counts
        self.time_each = False

    def observe(self, seconds: float) -> None:
        """Count one handler call that took ``seconds``."""
        self.counts[BUCKET0 + bisect_left(BUCKETS, seconds)] += 1

    def end_turn(self, handled: int, slow: int, seconds: float, each: bool) -> None:
        """Account a dispatch turn: ``handled`` calls, ``slow`` of them already observed,
        ``seconds`` of handler time, ``each`` when its calls were timed one by one."""
        quick = handled - slow
        if each:
            if seconds < FAST_BOUND:
                self.time_each = False  # a whole turn fits the first bucket again
        elif seconds >= FAST_BOUND:
            self.time_each = True
            if not slow and quick:  # no failed call took the overrun: one call did
                quick -= 1
                self.observe(seconds)
        counts = self.counts
        if quick:
            counts[BUCKET0] += quick
        counts[SUM_NS] += int(seconds * 1e9)

    def add(self, index: int, n: int = 1) -> None:
        """Add ``n`` to one counter (FAILED, DEAD_LETTERED, DROPPED, RESTARTS, ESCALATIONS)."""
        self.counts[index] += n

    @property
    def handled(self) -> int:
        """Messages whose handler ran (successfully or not)."""
        return sum(self.counts[BUCKET0 : BUCKET0 + len(BUCKETS) + 1])

    def __repr__(self) -> str:
        c = self.counts
        return f"<ActorStats {self.label} handled={self.handled} failed={c[FAILED]}>"


class BridgeStats:
    """Counters a broker bridge updates; the exporter publishes them as ``troupe_broker_*``.

    Counters: :meth:`consumed`, :meth:`acked`, :meth:`redelivered`,
    :meth:`dead_lettered`, :meth:`published`, :meth:`confirmed`,
    :meth:`publish_failed`. Gauges: :meth:`set_lag` (messages behind the head
    of the stream/partitions/queue) and :meth:`set_in_flight` (delivered, not
    yet acked). Get one with ``bridge_stats(system, name, broker)``; it works
    (and counts nothing visible) when metrics are off. ``name`` becomes a label:
    a stream/queue/topic name, never a URL (it could carry a password).
    """

    __slots__ = ("broker", "counts", "name")

    def __init__(self, name: str, broker: str, counts: memoryview) -> None:
        self.name = name
        self.broker = broker
        self.counts = counts

    def consumed(self, n: int = 1) -> None:
        """Messages taken from the broker and handed to the target actor."""
        self.counts[CONSUMED] += n

    def acked(self, n: int = 1) -> None:
        """Messages acknowledged/committed after their handler returned."""
        self.counts[ACKED] += n

    def redelivered(self, n: int = 1) -> None:
        """Messages received again (a retry or a reclaim)."""
        self.counts[REDELIVERED] += n

    def dead_lettered(self, n: int = 1) -> None:
        """Messages moved to the dead-letter queue."""
        self.counts[BRIDGE_DEAD_LETTERED] += n

    def published(self, n: int = 1) -> None:
        """Messages sent to the broker."""
        self.counts[PUBLISHED] += n

    def confirmed(self, n: int = 1) -> None:
        """Publishes the broker confirmed."""
        self.counts[CONFIRMED] += n

    def publish_failed(self, n: int = 1) -> None:
        """Publishes that failed for good (after the bridge's retries)."""
        self.counts[PUBLISH_FAILED] += n

    def set_lag(self, messages: int) -> None:
        """Set consumer lag: messages not yet consumed."""
        self.counts[LAG] = max(0, int(messages))

    def set_in_flight(self, messages: int) -> None:
        """Set in-flight: delivered to actors, not yet acked."""
        self.counts[IN_FLIGHT] = max(0, int(messages))


def _unused_counts() -> memoryview:
    return memoryview(bytearray(8 * VALUES)).cast("Q")


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
        self._unsubscribe = system.dead_letters.subscribe(self._dead_letter)

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
        return _unused_counts()

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

    def bridge(self, name: str, broker: str) -> BridgeStats:
        """The counters of the broker bridge ``name`` (``broker``: redis, kafka, ...)."""
        slot = self.store.slot(("bridge", name[:LABEL_CHARS], broker[:LABEL_CHARS]))
        return BridgeStats(name, broker, slot.values if slot is not None else _unused_counts())

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
        return BridgeStats(name, broker, _unused_counts())
    return metrics.bridge(name, broker)


def group_label(ref_or_cell: Any) -> str | None:
    """The metrics label of an actor (a ref or a cell), or None when metrics are off."""
    cell = getattr(ref_or_cell, "_cell", ref_or_cell)
    stats = getattr(cell, "metrics", None)
    return stats.label if stats is not None else None


__all__ = [
    "BUCKETS",
    "ActorStats",
    "BridgeStats",
    "Key",
    "SystemMetrics",
    "bridge_stats",
    "group_label",
]
