"""The broker-neutral interface every broker implements, and what bridges share with it.

A :class:`Broker` publishes (now, after a delay, in batches) and opens a
:class:`~troupe.brokers.session.ConsumerSession` per consumer
(:meth:`Broker.consume`). The delivery contract lives once, in the bridges
(:mod:`troupe.brokers.consumer`, :mod:`troupe.brokers.producer`); a broker
supplies only its transport and says in :class:`Capabilities` where it really
differs. How Redis consumer groups, AMQP queues and Kafka partitions map onto
the session is in :mod:`troupe.brokers.session`.
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any, Literal

from troupe.backoff import Backoff, BackoffState
from troupe.errors import TroupeError

from .message import (
    ATTEMPT,
    DELIVERIES,
    ENTRY_ID,
    ERROR_REASON,
    JSON,
    KEY,
    MESSAGE_ID,
    ORIGINAL_ENTRY_ID,
    ORIGINAL_GROUP,
    ORIGINAL_OFFSET,
    ORIGINAL_PARTITION,
    ORIGINAL_STREAM,
    STREAM,
    Message,
    Serializer,
    build_message,
)
from .session import ConsumerSession, Delivery
from .tail import Tail

logger = logging.getLogger(__name__)


class BrokerError(TroupeError):
    """A broker operation failed."""


class BrokerConnectionError(BrokerError, ConnectionError):
    """The connection to the broker is lost or cannot be made; bridges fail and restart."""


class PublishError(BrokerError):
    """A publish failed after its retries; the cause is chained."""


class PublishRefused(PublishError):
    """The broker refused a message (e.g. unroutable, returned by RabbitMQ): retrying would
    not help, so the producer bridge reports it at once."""


@dataclass(frozen=True, slots=True)
class Capabilities:
    """Where brokers really differ; the conformance suite reads it to pick what to test.

    ``ordering``: ``"stream"`` = first deliveries reach a consumer in publish
    order (Redis stream, AMQP queue); ``"key"`` = in order per key (Kafka
    partition); ``"none"`` = no promise. ``durable``: survives a broker
    restart. ``shared``: several processes can consume one group.
    """

    name: str
    ordering: Literal["stream", "key", "none"] = "stream"
    delayed: bool = True
    dead_letter: bool = True
    durable: bool = False  # survives a broker restart
    shared: bool = False  # several processes can consume the same group
    # one committed offset per partition (Kafka): no per-entry pending list or delivery
    # count; pending() is the group's lag; ack settles up to the contiguous handled offset
    offsets: bool = False
    #: unsettled deliveries go back to the source when their session closes (AMQP,
    #: Kafka), where Redis keeps them pending for that consumer
    requeue_on_close: bool = False
    #: entries are field maps another producer may write without troupe's framing (Redis)
    raw_entries: bool = True


@dataclass(slots=True)
class ConsumerStats:
    """Plain counters of one consumer (stream, group, consumer); read by metrics collectors."""

    delivered: int = 0  # handed to the target
    started: int = 0  # handler starts (attempts)
    acked: int = 0
    failed: int = 0  # handler failures (each one a retry or a dead letter)
    redelivered: int = 0  # deliveries the broker had delivered before (count above 1)
    dead_lettered: int = 0
    malformed: int = 0  # dead-lettered because the entry or payload did not decode
    in_flight: int = 0  # delivered, not yet acked or dead-lettered
    lag: int | None = None  # entries not yet delivered to the group (when the broker says)
    connection_failures: int = 0
    partitions: dict[int, PartitionStats] = field(default_factory=dict)  # brokers with partitions


@dataclass(slots=True)
class PartitionStats:
    """One assigned partition of a consumer (Kafka): lag, records out, committed offset."""

    lag: int | None = None  # records after the next one to hand out (None: not known yet)
    in_flight: int = 0  # handed out, not settled
    committed: int | None = None  # the group's committed offset


@dataclass(slots=True)
class ProducerStats:
    """Plain counters of one producer bridge; read by metrics collectors."""

    published: int = 0  # confirmed by the broker
    failed: int = 0  # given up after retries
    retries: int = 0
    batches: int = 0


@dataclass
class BrokerStats:
    """Counters that outlive bridge restarts, kept on the broker object."""

    consumers: dict[tuple[str, str, str], ConsumerStats] = field(default_factory=dict)
    producers: dict[str, ProducerStats] = field(default_factory=dict)

    def consumer(self, stream: str, group: str, consumer: str) -> ConsumerStats:
        """The counters of one consumer (made on first use)."""
        key = (stream, group, consumer)
        stats = self.consumers.get(key)
        if stats is None:
            stats = self.consumers[key] = ConsumerStats()
        return stats

    def producer(self, name: str) -> ProducerStats:
        """The counters of one producer bridge (made on first use)."""
        stats = self.producers.get(name)
        if stats is None:
            stats = self.producers[name] = ProducerStats()
        return stats


#: The cancel message of a publish that its producer bridge gave up at the delivery
#: deadline (and reported failed): a broker whose client would keep retrying it by itself
#: withdraws what it still holds (Kafka). Any other cancellation (the bridge was killed,
#: the system stopped) leaves the client to finish what it has: those messages may still
#: be stored, as they were never reported failed.
WITHDRAW = "withdraw: the publisher gave up at its delivery deadline"

DEFAULT_RECONNECT = Backoff(initial=0.1, maximum=10.0, multiplier=2.0, jitter="equal")


class Broker(ABC):
    """A broker's transport: publish, and consumer sessions for the bridges.

    Use :func:`troupe.brokers.connect` to make one from a URL. Every method is
    a coroutine on the caller's event loop. ``url`` never shows a password.
    ``journal_dir`` is where consumers on this host keep their attempt
    journals (see :mod:`troupe.brokers.attempts`; the temp dir by default).
    """

    capabilities: Capabilities

    def __init__(
        self,
        url: str,
        *,
        serializer: Serializer = JSON,
        reconnect: Backoff = DEFAULT_RECONNECT,
        journal_dir: str | os.PathLike[str] | None = None,
    ) -> None:
        from .redaction import redact

        self.url = redact(url)
        self.journal_dir = journal_dir
        self.serializer = serializer
        self.stats = BrokerStats()
        self._reconnect = BackoffState(reconnect)
        self._resume_at = 0.0

    # -- connection -----------------------------------------------------------------------

    async def connect(self) -> None:  # noqa: B027 - optional hook
        """Open the connection (idempotent); raises BrokerConnectionError."""

    async def close(self) -> None:  # noqa: B027 - optional hook
        """Close the connection."""

    async def __aenter__(self) -> Broker:
        await self.connect()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    def connection_lost(self, now: float) -> float:
        """Record a lost connection at ``now``; returns the backoff before reconnecting.

        Bridges call this before they fail, and wait out :meth:`reconnect_wait`
        when restarted, so restarts after lost connections back off (reset after
        a quiet period) whichever supervisor restarts them.
        """
        delay = self._reconnect.next_delay(now)
        self._resume_at = now + delay
        return delay

    def reconnect_wait(self, now: float) -> float:
        """Seconds to wait before the next connection attempt (0 when none is due)."""
        return max(0.0, self._resume_at - now)

    # -- producing ------------------------------------------------------------------------

    def message(
        self,
        payload: Any,
        *,
        key: str | None = None,
        headers: Mapping[str, str] | None = None,
        serializer: Serializer | None = None,
    ) -> Message:
        """Build a Message: bytes payloads are the body as they are (marked
        ``application/octet-stream``, so a consumer gets bytes back whatever its
        serializer), others are serialized."""
        return build_message(
            payload,
            serializer or self.serializer,
            key=key,
            headers=dict(headers) if headers else {},
        )

    async def publish(
        self,
        stream: str,
        payload: Any,
        *,
        key: str | None = None,
        headers: Mapping[str, str] | None = None,
        delay: float | None = None,
        at: float | None = None,
        serializer: Serializer | None = None,
    ) -> str:
        """Publish one payload; returns the message id.

        ``delay`` (seconds) or ``at`` (a ``time.time()`` timestamp) hold the
        message back until then.
        """
        message = self.message(payload, key=key, headers=headers, serializer=serializer)
        await self.publish_messages(stream, [message], delay=delay, at=at)
        return message.id

    async def publish_messages(
        self,
        stream: str,
        messages: Sequence[Message],
        *,
        delay: float | None = None,
        at: float | None = None,
    ) -> list[str]:
        """Publish a batch in one round trip; returns the broker's entry ids (or ``""``)."""
        if not messages:
            return []
        due = at if at is not None else (time.time() + delay if delay else None)
        if due is not None and due > time.time():
            await self._schedule(stream, messages, due)
            return ["" for _ in messages]
        return await self._append(stream, messages)

    async def publish_once(
        self,
        stream: str,
        messages: Sequence[Message],
        *,
        producer: str,
        sequence: int,
        window: float,
        delay: float | None = None,
        at: float | None = None,
    ) -> list[str]:
        """Publish a batch that may be sent again after an ambiguous failure; stored once.

        A retry after a lost reply (the request reached the broker, the answer did
        not come back) must not store the batch twice: ``producer`` names the
        sender (unique per producer instance) and ``sequence`` numbers its
        batches in increasing order; a batch whose (producer, sequence) was
        stored in the last ``window`` seconds is not stored again (its entry ids
        are returned), and an older sequence than the last stored one is refused.
        Otherwise as :meth:`publish_messages`.
        """
        if not messages:
            return []
        due = at if at is not None else (time.time() + delay if delay else None)
        if due is not None and due <= time.time():
            due = None
        return await self._publish_once(stream, messages, due, producer, sequence, window)

    async def _publish_once(
        self,
        stream: str,
        messages: Sequence[Message],
        due: float | None,
        producer: str,
        sequence: int,
        window: float,
    ) -> list[str]:
        """Store a batch once per (producer, sequence); held until ``due`` unless None.

        This default suits a broker whose publish is never ambiguous (it runs
        in this process, as the memory broker does); brokers over a network
        override it.
        """
        if due is not None:
            await self._schedule(stream, messages, due)
            return ["" for _ in messages]
        return await self._append(stream, messages)

    @abstractmethod
    async def _append(self, stream: str, messages: Sequence[Message]) -> list[str]:
        """Append messages to the stream now."""

    @abstractmethod
    async def _schedule(self, stream: str, messages: Sequence[Message], due: float) -> None:
        """Hold messages until ``due`` (a ``time.time()`` timestamp)."""

    @abstractmethod
    async def promote_due(self, stream: str) -> int:
        """Move delayed messages that are due into the stream; returns how many moved."""

    # -- consuming ------------------------------------------------------------------------

    @abstractmethod
    async def ensure_group(self, stream: str, group: str) -> None:
        """Declare the source and the group (idempotent); the group starts at the oldest entry."""

    @abstractmethod
    async def consume(
        self,
        stream: str,
        group: str,
        consumer: str,
        *,
        window: int,
        claim_idle: float = 30.0,
        delay_poll: float = 0.05,
    ) -> ConsumerSession:
        """Open a session for ``consumer`` in ``group`` (declaring both if needed).

        ``window``: the most deliveries held unsettled at once; ``claim_idle``:
        seconds before an unsettled delivery of a dead consumer may be taken
        over; ``delay_poll``: how often delayed messages that fell due are
        moved into the stream. Raises BrokerConnectionError.
        """

    @abstractmethod
    async def read_stream(self, stream: str, count: int = 1000) -> list[Message]:
        """The messages in a stream, oldest first (for DLQs, tests and tools)."""

    async def dead_letters(self, stream: str, count: int = 1000) -> list[Message]:
        """The dead-lettered messages of ``stream``, oldest first."""
        return await self.read_stream(self.dlq(stream), count)

    async def remove_dead(self, stream: str, message_id: str) -> bool:
        """Remove the dead-lettered message ``message_id`` from ``stream``'s DLQ (after a
        requeue, or to drop it); False when it is not there. Brokers whose DLQ cannot
        lose one message (an AMQP queue, a Kafka topic) raise BrokerError."""
        raise BrokerError(
            f"{self.capabilities.name}: a dead-lettered message cannot be removed one by one"
        )

    @abstractmethod
    async def pending(self, stream: str, group: str) -> int:
        """Entries delivered to the group and not acknowledged."""

    @abstractmethod
    async def lag(self, stream: str, group: str) -> int | None:
        """Entries in the stream not yet delivered to the group (None when unknown)."""

    # -- broadcast topics (troupe.brokers.tail) ------------------------------------------

    async def broadcast(self, topic: str, messages: Sequence[Message]) -> None:
        """Send ``messages`` to every :class:`~troupe.brokers.tail.Tail` open on ``topic``
        (at most once, not durable; see :mod:`troupe.brokers.tail`)."""
        raise BrokerError(f"the {self.capabilities.name} broker has no broadcast topics")

    async def broadcast_queued(
        self, topic: str, messages: Sequence[Message]
    ) -> asyncio.Future[None]:
        """:meth:`broadcast`, returning once ``messages`` are queued in order: the future
        completes when they are sent, or fails with what :meth:`broadcast` would raise.
        Messages of a call made after this one returned follow these on ``topic``, so a
        sender may queue its next batch while this one is in flight. Default: the whole
        :meth:`broadcast`, then a done future (Kafka overrides it: acks=all takes a round
        trip that the next batch need not wait for)."""
        await self.broadcast(topic, messages)
        done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        done.set_result(None)
        return done

    async def tail(self, topic: str) -> Tail:
        """Open a tail of ``topic``: the messages broadcast on it from now on."""
        raise BrokerError(f"the {self.capabilities.name} broker has no broadcast topics")

    def dlq(self, stream: str) -> str:
        """The dead-letter stream of ``stream``."""
        return f"{stream}:dlq"

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.url}>"


_DELIVERY_HEADERS = frozenset({ATTEMPT, ENTRY_ID, KEY, MESSAGE_ID, STREAM})  # set per delivery


def dead_message(delivery: Delivery, reason: str, attempts: int) -> Message:
    """The message a delivery becomes in the DLQ: same id, body, key and headers, plus the
    reason, the origin (stream, group, entry id, partition and offset where they exist) and
    the number of started attempts. An entry that could not be read keeps its original
    fields byte for byte (``Message.raw``)."""
    extra = {
        ERROR_REASON: reason,
        ORIGINAL_STREAM: delivery.stream,
        ORIGINAL_GROUP: delivery.group,
        ORIGINAL_ENTRY_ID: delivery.entry_id,
        DELIVERIES: str(attempts),
    }
    if delivery.partition is not None:
        extra[ORIGINAL_PARTITION] = str(delivery.partition)
    if delivery.offset is not None:
        extra[ORIGINAL_OFFSET] = str(delivery.offset)
    original = delivery.message
    if original is not None:
        headers = {k: v for k, v in original.headers.items() if k not in _DELIVERY_HEADERS}
        return Message(
            original.body,
            original.key,
            {**headers, **extra},
            original.id,
            original.timestamp,
        )
    raw = dict(delivery.raw or {})
    raw_id = raw.get(b"i")
    try:
        message_id = raw_id.decode() if raw_id is not None else delivery.entry_id
    except UnicodeDecodeError:
        message_id = delivery.entry_id
    return Message(b"", None, extra, message_id, time.time(), raw=raw)


def to_str(value: Any) -> str:
    """A broker reply value (bytes or str) as str."""
    return value.decode() if isinstance(value, bytes) else str(value)


__all__ = [
    "Broker",
    "BrokerConnectionError",
    "BrokerError",
    "BrokerStats",
    "Capabilities",
    "ConsumerSession",
    "ConsumerStats",
    "Delivery",
    "PartitionStats",
    "ProducerStats",
    "PublishError",
    "PublishRefused",
    "dead_message",
]
