"""The counters the dispatcher bumps: one row of 64-bit integers per actor group or bridge.

:class:`ActorStats` is an actor group's row (messages by outcome, handler
time histogram, restarts, gauges), :class:`BridgeStats` a broker bridge's.
The column constants name the integers in a row; :mod:`troupe.metrics.export`
reads them at scrape time.
"""

from __future__ import annotations

import logging
from bisect import bisect_left

from .store import VALUES

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

# Values of a partition's slot ("partition", bridge, broker, partition), all gauges.
PARTITION_LAG = 0
PARTITION_IN_FLIGHT = 1
PARTITION_LAG_KNOWN = 2  # 1 when some consumer knew the partition's lag
PARTITION_GAUGES = (PARTITION_LAG, PARTITION_IN_FLIGHT, PARTITION_LAG_KNOWN)

# Values of an event loop's slot (see troupe.loop_lag): the lag histogram.
#: Upper bounds (seconds) of the ``troupe_loop_lag_seconds`` histogram; a +Inf bucket follows.
LAG_BUCKETS: tuple[float, ...] = (
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
)
LAG_SUM_NS = 0
LAG_BUCKET0 = 1

# Values of a process slot: the wall-clock start time (ns) and the pid.
STARTED_NS = 0
PID = 1

LABEL_CHARS = 48  # label values are cut to this length (keys must fit a slot)
REASON_LIMIT = 50
OTHER = "_other"

assert BUCKET0 + len(BUCKETS) + 1 <= VALUES
assert LAG_BUCKET0 + len(LAG_BUCKETS) + 1 <= VALUES


def observe_lag(counts: memoryview, seconds: float) -> None:
    """Count one loop-lag measurement of ``seconds`` in an event loop's slot."""
    counts[LAG_BUCKET0 + bisect_left(LAG_BUCKETS, seconds)] += 1
    counts[LAG_SUM_NS] += int(seconds * 1e9)


class ActorStats:
    """The counters of one metrics group; shared by every actor with its label.

    The dispatcher reads the clock a few times per turn, at the end of
    segments of messages (see :mod:`troupe.dispatch`), not per message. A
    segment that finished within ``FAST_BOUND`` counts all its calls in the
    first bucket; a slower one is observed as one call that took the whole
    segment (exact for a segment of one message; an actor whose segment
    overran times each message until its turns are fast again). Counts and
    the duration sum are exact; only the bucket of calls in an overrunning
    segment is estimated. Failed calls are always timed on their own.
    """

    __slots__ = ("counts", "label")

    def __init__(self, label: str, counts: memoryview) -> None:
        self.label = label
        self.counts = counts

    def observe(self, seconds: float) -> None:
        """Count one handler call that took ``seconds``."""
        self.counts[BUCKET0 + bisect_left(BUCKETS, seconds)] += 1

    def end_turn(self, handled: int, slow: int, seconds: float) -> None:
        """Account a dispatch turn: ``handled`` calls, ``slow`` of them already observed
        (the rest were fast), ``seconds`` of handler time."""
        counts = self.counts
        quick = handled - slow
        if quick > 0:
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


def unused_counts() -> memoryview:
    """A detached row of counters: written to, never exported."""
    return memoryview(bytearray(8 * VALUES)).cast("Q")
