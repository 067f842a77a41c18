"""The in-memory broker: the embedded default, no server, same contract as the real ones.

Streams are append-only logs with consumer groups. Each group has a read
position, a pending-entries list (consumer, delivery count, last delivery
time) and an attempts record (handler starts per pending entry), so
redelivery, takeover from dead consumers, start-counted dead-lettering and
delayed messages behave as on Redis Streams. A start is counted in the record
directly (no journal is needed: the record lives in this process), so every
earlier delivery is accounted for and the broker-count backstop never fires
here. Everything is lost with the process (use Redis for durability).

>>> import asyncio
>>> from troupe.brokers import MemoryBroker
>>> async def main():
...     broker = MemoryBroker()
...     session = await broker.consume("orders", "billing", "c1", window=10)
...     await broker.publish("orders", {"id": 1})
...     [d] = await session.fetch(10, 0)
...     session.attempts.started(d)             # the handler starts ...
...     await session.ack([d])                  # ... and returned
...     return d.attempts, await broker.pending("orders", "billing")
>>> asyncio.run(main())
(0, 0)
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
import logging
import os
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from troupe.backoff import Backoff

from .base import DEFAULT_RECONNECT, Broker, BrokerError, Capabilities
from .memory_tail import MemoryTopics
from .message import JSON, MalformedMessage, Message, Serializer, from_fields, to_fields
from .options import check_maxlen
from .session import AttemptLog, ConsumerSession, Delivery
from .tail import Tail

logger = logging.getLogger(__name__)

Fields = dict[bytes, bytes]


@dataclass(slots=True)
class _Pending:
    consumer: str
    deliveries: int
    delivered_at: float


@dataclass(slots=True)
class _Group:
    next_seq: int
    pending: dict[int, _Pending] = field(default_factory=dict)
    attempts: dict[int, int] = field(default_factory=dict)  # handler starts per pending entry


@dataclass(slots=True)
class _Stream:
    entries: list[Fields] = field(default_factory=list)
    first_seq: int = 0  # sequence number of entries[0] (trimming moves it)
    groups: dict[str, _Group] = field(default_factory=dict)
    removed: set[int] = field(default_factory=set)  # entries deleted (remove_dead)
    delayed: list[tuple[float, int, Fields]] = field(default_factory=list)
    waiters: list[asyncio.Future[None]] = field(default_factory=list)

    @property
    def end(self) -> int:
        return self.first_seq + len(self.entries)

    def get(self, seq: int) -> Fields | None:
        index = seq - self.first_seq
        if 0 <= index < len(self.entries) and seq not in self.removed:
            return self.entries[index]
        return None


class MemoryBroker(Broker):
    """Streams, consumer groups, pending entries, redelivery, delay and DLQ in memory.

    ``maxlen`` trims every stream to that many entries; ``clock`` is the time
    source for delays and idle times (``time.time`` by default).
    """

    capabilities = Capabilities("memory", ordering="stream", durable=False, shared=False)

    def __init__(
        self,
        url: str = "memory://",
        *,
        maxlen: int | None = None,
        clock: Callable[[], float] = time.time,
        serializer: Serializer = JSON,
        reconnect: Backoff = DEFAULT_RECONNECT,
        journal_dir: str | os.PathLike[str] | None = None,
    ) -> None:
        super().__init__(url, serializer=serializer, reconnect=reconnect, journal_dir=journal_dir)
        check_maxlen(maxlen)
        self.maxlen = maxlen
        self._clock = clock
        self._streams: dict[str, _Stream] = {}
        self._order = itertools.count()
        self._topics = MemoryTopics()

    def _stream(self, name: str) -> _Stream:
        stream = self._streams.get(name)
        if stream is None:
            stream = self._streams[name] = _Stream()
        return stream

    # -- producing ------------------------------------------------------------------------

    async def _append(self, stream: str, messages: Sequence[Message]) -> list[str]:
        return [self._add(stream, to_fields(m)) for m in messages]

    def _add(self, name: str, fields: Fields) -> str:
        stream = self._stream(name)
        seq = stream.end
        stream.entries.append(fields)
        if self.maxlen is not None and len(stream.entries) > self.maxlen:
            cut = len(stream.entries) - self.maxlen
            del stream.entries[:cut]
            stream.first_seq += cut
        waiters, stream.waiters = stream.waiters, []
        for waiter in waiters:
            if not waiter.done():
                waiter.set_result(None)
        return str(seq)

    async def _schedule(self, stream: str, messages: Sequence[Message], due: float) -> None:
        delayed = self._stream(stream).delayed
        for message in messages:
            heapq.heappush(delayed, (due, next(self._order), to_fields(message)))

    async def promote_due(self, stream: str) -> int:
        return self._promote(stream)

    def _promote(self, name: str) -> int:
        stream = self._streams.get(name)
        if stream is None or not stream.delayed:
            return 0
        now = self._clock()
        moved = 0
        while stream.delayed and stream.delayed[0][0] <= now:
            _, _, fields = heapq.heappop(stream.delayed)
            self._add(name, fields)
            moved += 1
        return moved

    # -- consuming ------------------------------------------------------------------------

    async def ensure_group(self, stream: str, group: str) -> None:
        s = self._stream(stream)
        if group not in s.groups:
            s.groups[group] = _Group(next_seq=s.first_seq)

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
        await self.ensure_group(stream, group)
        return MemorySession(self, stream, group, consumer, window, claim_idle)

    def _group(self, stream: str, group: str) -> tuple[_Stream, _Group]:
        s = self._streams.get(stream)
        g = s.groups.get(group) if s is not None else None
        if s is None or g is None:
            raise BrokerError(
                f"no consumer group {group!r} on stream {stream!r}; call ensure_group first"
            )
        return s, g

    def _settle(self, g: _Group, deliveries: Sequence[Delivery]) -> None:
        for delivery in deliveries:
            seq = int(delivery.entry_id)
            g.pending.pop(seq, None)
            g.attempts.pop(seq, None)

    async def read_stream(self, stream: str, count: int = 1000) -> list[Message]:
        s = self._streams.get(stream)
        if s is None:
            return []
        out: list[Message] = []
        for i, fields in enumerate(s.entries):
            if len(out) >= count:
                break
            if s.first_seq + i not in s.removed:
                out.append(from_fields(fields, str(s.first_seq + i)))
        return out

    async def remove_dead(self, stream: str, message_id: str) -> bool:
        s = self._streams.get(self.dlq(stream))
        if s is None:
            return False
        for i, fields in enumerate(s.entries):
            seq = s.first_seq + i
            if seq not in s.removed and from_fields(fields, str(seq)).id == message_id:
                s.removed.add(seq)
                return True
        return False

    async def pending(self, stream: str, group: str) -> int:
        """Entries delivered to the group and not acknowledged."""
        return len(self._group(stream, group)[1].pending)

    async def lag(self, stream: str, group: str) -> int | None:
        s, g = self._group(stream, group)
        return max(0, s.end - max(g.next_seq, s.first_seq))

    async def broadcast(self, topic: str, messages: Sequence[Message]) -> None:
        self._topics.broadcast(topic, messages)

    async def tail(self, topic: str) -> Tail:
        return self._topics.open(topic)

    def inject_raw(self, stream: str, fields: dict[bytes, bytes]) -> str:
        """Append a raw entry (tests use it to put malformed entries on a stream)."""
        return self._add(stream, dict(fields))


class _RecordAttempts(AttemptLog):
    """Starts counted straight into the group's attempts record (it lives in this process)."""

    def __init__(self, group: _Group) -> None:
        self._attempts = group.attempts

    def started(self, delivery: Delivery) -> None:
        seq = int(delivery.entry_id)
        self._attempts[seq] = self._attempts.get(seq, 0) + 1

    async def failed(self, delivery: Delivery) -> None:
        return None  # counted when it started

    def settled(self, deliveries: Sequence[Delivery]) -> None:
        return None  # the record entry went with the ack


class MemorySession(ConsumerSession):
    """One consumer of a group on the in-memory broker (see :class:`ConsumerSession`)."""

    def __init__(
        self,
        broker: MemoryBroker,
        stream: str,
        group: str,
        consumer: str,
        window: int,
        claim_idle: float,
    ) -> None:
        super().__init__(stream, group, consumer, window)
        self._broker = broker
        self._stream, self._g = broker._group(stream, group)
        self.claim_idle = claim_idle
        self.attempts = _RecordAttempts(self._g)
        self._own: int | None = -1  # cursor over this consumer's pending entries (a restart)
        self._next_claim = 0.0

    async def fetch(self, limit: int, timeout: float) -> list[Delivery]:
        broker, s, g = self._broker, self._stream, self._g
        if self._own is not None:
            start = self._own
            mine = sorted(
                seq for seq, p in g.pending.items() if p.consumer == self.consumer and seq > start
            )[:limit]
            if mine:
                self._own = mine[-1]
                return self._claim(mine)
            self._own = None
        now = broker._clock()
        if now >= self._next_claim:
            self._next_claim = now + max(self.claim_idle / 2, 0.01)
            cutoff = now - self.claim_idle
            idle = sorted(seq for seq, p in g.pending.items() if p.delivered_at <= cutoff)
            if idle:
                return self._claim(idle[:limit])
        deadline = now + timeout
        while True:
            broker._promote(self.stream)
            out = self._take_new(limit)
            remaining = deadline - broker._clock()
            if out or remaining <= 0:
                return out
            if s.delayed:
                remaining = min(remaining, max(0.0, s.delayed[0][0] - broker._clock()))
            waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
            s.waiters.append(waiter)
            try:
                async with asyncio.timeout(max(remaining, 0.001)):  # wait_for can eat cancels
                    await waiter
            except TimeoutError:
                pass
            finally:
                if waiter in s.waiters:
                    s.waiters.remove(waiter)

    def _take_new(self, limit: int) -> list[Delivery]:
        s, g = self._stream, self._g
        out: list[Delivery] = []
        g.next_seq = max(g.next_seq, s.first_seq)
        now = self._broker._clock()
        while len(out) < limit and g.next_seq < s.end:
            seq = g.next_seq
            g.next_seq += 1
            fields = s.get(seq)
            if fields is None:
                continue
            g.pending[seq] = _Pending(self.consumer, 1, now)
            out.append(_delivery(self.stream, self.group, seq, 1, 0, fields))
        return out

    def _claim(self, seqs: list[int], *, count: bool = True) -> list[Delivery]:
        s, g = self._stream, self._g
        out: list[Delivery] = []
        now = self._broker._clock()
        for seq in seqs:
            fields = s.get(seq)
            entry = g.pending.get(seq)
            if entry is None:
                continue
            if fields is None:  # trimmed away: nothing left to deliver
                del g.pending[seq]
                g.attempts.pop(seq, None)
                continue
            entry.consumer = self.consumer
            if count:
                entry.deliveries += 1
            entry.delivered_at = now
            attempts = g.attempts.get(seq, 0)
            out.append(_delivery(self.stream, self.group, seq, entry.deliveries, attempts, fields))
        return out

    async def ack(self, deliveries: Sequence[Delivery]) -> None:
        self._broker._settle(self._g, deliveries)

    async def dead_letter(self, delivery: Delivery, message: Message) -> None:
        self._broker._add(self._broker.dlq(self.stream), to_fields(message))
        self._broker._settle(self._g, [delivery])

    async def renew(self, deliveries: Sequence[Delivery]) -> list[Delivery]:
        kept = {int(d.entry_id): d for d in deliveries}
        renewed = self._claim(sorted(kept), count=False)
        for fresh in renewed:
            fresh.attempts = max(fresh.attempts, kept[int(fresh.entry_id)].attempts)
        return renewed

    async def release(self, deliveries: Sequence[Delivery]) -> None:
        return None  # they stay pending: resumed by this consumer or taken over when idle

    async def lag(self) -> int | None:
        return await self._broker.lag(self.stream, self.group)


def _delivery(
    stream: str, group: str, seq: int, count: int, attempts: int, fields: Fields
) -> Delivery:
    entry_id = str(seq)
    known = count - 1  # every earlier delivery ended in this process: its starts are recorded
    try:
        message = from_fields(fields, entry_id)
    except MalformedMessage as exc:
        return Delivery(
            stream, group, entry_id, None, count, attempts, str(exc), fields, accounted=known
        )
    return Delivery(stream, group, entry_id, message, count, attempts, accounted=known)
