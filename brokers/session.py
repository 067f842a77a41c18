"""The consumer side of the broker interface: a session per consumer, deliveries, attempts.

The delivery contract (ack after the handler returned, retry with backoff,
dead-letter after ``max_deliveries`` started attempts, drain without acking
unhandled work) lives once, in :class:`~troupe.brokers.ConsumerBridge`. A broker
supplies only the transport: :meth:`Broker.consume
<troupe.brokers.Broker.consume>` opens a :class:`ConsumerSession` for one
consumer of a group, and the bridge drives it.

Shared terms, and how each broker model maps onto them:

=============  ===========================  ============================  ==========================
term           Redis Streams                AMQP queue (RabbitMQ)         Kafka
=============  ===========================  ============================  ==========================
source         stream                       queue                         topic
group          consumer group               the queue's consumers         consumer group
``fetch``      own pending (XCLAIM) after   drain the push buffer, kept   ``getmany`` from assigned
               a restart, idle pending of   full by ``basic.qos``         partitions (paused while
               dead consumers (XAUTOCLAIM), (prefetch = ``window``)       ``window`` is used up)
               then new (XREADGROUP COUNT)
``entry_id``   stream entry id              message id                    ``<partition>:<offset>``
``deliveries`` PEL delivery count           ``x-delivery-count`` + 1      1 (Kafka does not count)
``ack``        XACK                         ``basic.ack``                 commit the highest
                                                                          contiguous handled offset
``renew``      XCLAIM JUSTID (count kept)   kept unacked on the channel   kept uncommitted in memory
``release``    nothing: stays pending,      ``basic.nack(requeue=True)``  nothing committed beyond
               resumed or claimed later                                   the contiguous handled
``dead_letter`` XADD to ``<stream>:dlq`` +  publish to the DLQ, confirm,  produce to the DLQ topic,
               XACK in MULTI/EXEC           then ``basic.ack``            then handled like an ack
takeover       XAUTOCLAIM after             the broker redelivers when    rebalance: revoked
               ``claim_idle``               the channel closes            partitions are released
=============  ===========================  ============================  ==========================

Attempts are counted when a handler *starts* (:class:`AttemptLog`), durably,
in a record kept by the broker (Redis: one hash per stream and group; memory:
a dict; RabbitMQ and Kafka: the same side record keyed by ``entry_id``), never
by fetching or claiming. Each delivery carries ``attempts``: the starts
recorded before it was fetched. See :mod:`troupe.brokers.attempts` for how a
start survives kill -9 without a round trip per message.
"""

from __future__ import annotations

import logging
from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from .message import Message

logger = logging.getLogger(__name__)


@dataclass(slots=True)
class Delivery:
    """One delivery of a message to a consumer, whatever the broker.

    ``stream`` is the source (stream / queue / topic) and ``entry_id`` the
    message's place in it (Redis entry id, AMQP message id, Kafka
    ``partition:offset``; ``partition`` and ``offset`` are set where they
    exist). ``deliveries`` is the broker's own count (1 the first time; a
    backstop only). ``attempts`` is the number of handler starts recorded
    before this delivery. ``accounted`` is how many of the earlier deliveries
    are explained without a lost start (a consumer that held it ended and its
    journal was folded: see :func:`troupe.brokers.attempts.account`); the
    backstop counts only the others. ``message`` is None when the entry could
    not be read: ``error`` says why and ``raw`` holds the entry's original
    fields, byte for byte. ``token`` belongs to the transport (a delivery tag,
    a claim cursor).
    """

    stream: str
    group: str
    entry_id: str
    message: Message | None
    deliveries: int = 1
    attempts: int = 0
    error: str | None = None
    raw: Mapping[bytes, bytes] | None = None
    partition: int | None = None
    offset: int | None = None
    token: Any = None
    accounted: int = 0

    @property
    def recorded(self) -> bool:
        """True when the broker may hold an attempts record for it (to clean on settle)."""
        return self.attempts > 0 or self.deliveries > 1


class AttemptLog(ABC):
    """Counts handler starts so that they survive kill -9 of the consumer.

    ``started`` is synchronous and cheap (the bridge calls it from
    :meth:`troupe.DeliveryTracker.started`, right before the handler runs);
    ``failed`` moves a start into the broker's durable record (awaited before a
    retry is scheduled); ``settled`` forgets starts whose record went away with
    the ack or the DLQ move. ``close`` ends this consumer's log: starts still in
    it are folded into the record by the next session that opens (a crash).
    """

    @abstractmethod
    def started(self, delivery: Delivery) -> None:
        """One more start of ``delivery`` (synchronous, durable against kill -9)."""

    @abstractmethod
    async def failed(self, delivery: Delivery) -> None:
        """The start of ``delivery`` ended in a failure: count it in the durable record."""

    @abstractmethod
    def settled(self, deliveries: Sequence[Delivery]) -> None:
        """``deliveries`` were acked or dead-lettered: their starts need no counting."""

    def settled_one(self, delivery: Delivery) -> None:
        """``settled`` for one delivery (the bridge calls it as each handler returns)."""
        self.settled((delivery,))

    async def fold_dead(self) -> int:
        """Fold the logs of dead consumers into the durable record; returns how many starts."""
        return 0

    def close(self) -> None:  # noqa: B027 - optional hook
        """End this log (idempotent); starts left in it count as attempts of a crash."""


class OwnershipListener(Protocol):
    """Told which partitions a consumer owns (brokers with partitions: Kafka).

    ``revoked`` runs during a rebalance after the revoked partitions' handed-out
    deliveries settled (or the drain deadline passed), before their next owner starts;
    ``assigned`` once the member has its new assignment (and at once, with the current
    one, when the listener is added).
    """

    async def revoked(self, partitions: Sequence[int]) -> None:
        """This member no longer owns ``partitions``."""

    def assigned(self, partitions: Sequence[int]) -> None:
        """This member owns ``partitions`` (besides those it kept)."""


class ConsumerSession(ABC):
    """One consumer of a group, opened by :meth:`Broker.consume`; the bridge drives it.

    ``window`` is the most deliveries the consumer holds unsettled at once
    (AMQP prefetch, Kafka pause threshold). ``claim_idle`` is how long a
    delivery may stay unsettled before another consumer may take it over
    (brokers that redeliver by themselves ignore it).
    """

    attempts: AttemptLog

    def __init__(self, stream: str, group: str, consumer: str, window: int) -> None:
        self.stream = stream
        self.group = group
        self.consumer = consumer
        self.window = window

    @abstractmethod
    async def fetch(self, limit: int, timeout: float) -> list[Delivery]:
        """Up to ``limit`` deliveries; waits up to ``timeout`` seconds when none is ready."""

    @abstractmethod
    async def ack(self, deliveries: Sequence[Delivery]) -> None:
        """Settle handled deliveries (and drop their attempts record)."""

    @abstractmethod
    async def dead_letter(self, delivery: Delivery, message: Message) -> None:
        """Put ``message`` on the DLQ and settle ``delivery``, atomically where possible."""

    @abstractmethod
    async def renew(self, deliveries: Sequence[Delivery]) -> list[Delivery]:
        """Take back deliveries held across a retry delay; returns those still this
        consumer's (the others were settled or taken over meanwhile)."""

    @abstractmethod
    async def release(self, deliveries: Sequence[Delivery]) -> None:
        """Give back unhandled deliveries on a drain: never acked, delivered again later."""

    async def lag(self) -> int | None:
        """Messages of the source not yet delivered to the group (None when unknown)."""
        return None

    def listen(self, listener: OwnershipListener) -> bool:
        """Tell ``listener`` of partition assignments and revokes; False when the broker
        has no partitions (the default: nothing to tell)."""
        return False

    async def close(self) -> None:  # noqa: B027 - optional hook
        """End the session (the attempt log is closed separately by the bridge)."""


__all__ = ["AttemptLog", "ConsumerSession", "Delivery", "OwnershipListener"]
