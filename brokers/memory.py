"""The in-memory broker: the embedded default, no server, same contract as the real ones.

Streams are append-only logs with consumer groups. Each group has a read
position and a pending-entries list (consumer, delivery count, last delivery
time), so redelivery, claiming from dead consumers, delivery-counted
dead-lettering and delayed messages behave like Redis Streams. Everything
lives in this process: a crash loses it (use Redis for durability).

>>> import asyncio
>>> from troupe.brokers import MemoryBroker
>>> async def main():
...     broker = MemoryBroker()
...     await broker.ensure_group("orders", "billing")
...     await broker.publish("orders", {"id": 1})
...     [d] = await broker.read("orders", "billing", "c1", 10, 0)
...     await broker.ack("orders", "billing", [d.entry_id])
...     return d.deliveries, await broker.pending("orders", "billing")
>>> asyncio.run(main())
(1, 0)
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
import logging
import time
from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass, field

from troupe.backoff import Backoff

from .base import DEFAULT_RECONNECT, Broker, BrokerError, Capabilities, Delivery
from .message import JSON, MalformedMessage, Message, Serializer, from_fields, to_fields

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


@dataclass(slots=True)
class _Stream:
    entries: list[Fields] = field(default_factory=list)
    first_seq: int = 0  # sequence number of entries[0] (trimming moves it)
    groups: dict[str, _Group] = field(default_factory=dict)
    delayed: list[tuple[float, int, Fields]] = field(default_factory=list)
    waiters: list[asyncio.Future[None]] = field(default_factory=list)

    @property
    def end(self) -> int:
        return self.first_seq + len(self.entries)

    def get(self, seq: int) -> Fields | None:
        index = seq - self.first_seq
        if 0 <= index < len(self.entries):
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
    ) -> None:
        super().__init__(url, serializer=serializer, reconnect=reconnect)
        self.maxlen = maxlen
        self._clock = clock
        self._streams: dict[str, _Stream] = {}
        self._order = itertools.count()

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

    def _group(self, stream: str, group: str) -> tuple[_Stream, _Group]:
        s = self._streams.get(stream)
        g = s.groups.get(group) if s is not None else None
        if s is None or g is None:
            raise BrokerError(
                f"no consumer group {group!r} on stream {stream!r}; call ensure_group first"
            )
        return s, g

    async def read(
        self, stream: str, group: str, consumer: str, count: int, block: float
    ) -> list[Delivery]:
        s, g = self._group(stream, group)
        deadline = self._clock() + block
        while True:
            self._promote(stream)
            out = self._take_new(stream, group, s, g, consumer, count)
            remaining = deadline - self._clock()
            if out or remaining <= 0:
                return out
            if s.delayed:
                remaining = min(remaining, max(0.0, s.delayed[0][0] - self._clock()))
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

    def _take_new(
        self, name: str, group: str, s: _Stream, g: _Group, consumer: str, count: int
    ) -> list[Delivery]:
        out: list[Delivery] = []
        g.next_seq = max(g.next_seq, s.first_seq)
        now = self._clock()
        while len(out) < count and g.next_seq < s.end:
            seq = g.next_seq
            g.next_seq += 1
            fields = s.get(seq)
            if fields is None:
                continue
            g.pending[seq] = _Pending(consumer, 1, now)
            out.append(_delivery(name, group, seq, 1, fields))
        return out

    async def claim_own(
        self,
        stream: str,
        group: str,
        consumer: str,
        count: int,
        *,
        after: str | None = None,
        exclude: Collection[str] = (),
    ) -> tuple[list[Delivery], str | None]:
        s, g = self._group(stream, group)
        start = -1 if after is None else int(after)
        skip = {int(e) for e in exclude}
        mine = sorted(
            seq
            for seq, p in g.pending.items()
            if p.consumer == consumer and seq > start and seq not in skip
        )
        page = mine[:count]
        cursor = str(page[-1]) if len(mine) > count else None
        return self._claim(stream, group, s, g, consumer, page), cursor

    async def claim_idle(
        self, stream: str, group: str, consumer: str, min_idle: float, count: int
    ) -> list[Delivery]:
        s, g = self._group(stream, group)
        cutoff = self._clock() - min_idle
        idle = [seq for seq, p in g.pending.items() if p.delivered_at <= cutoff]
        return self._claim(stream, group, s, g, consumer, sorted(idle)[:count])

    def _claim(
        self, name: str, group: str, s: _Stream, g: _Group, consumer: str, seqs: list[int]
    ) -> list[Delivery]:
        out: list[Delivery] = []
        now = self._clock()
        for seq in seqs:
            fields = s.get(seq)
            if fields is None:  # trimmed away: nothing left to deliver
                g.pending.pop(seq, None)
                continue
            entry = g.pending[seq]
            entry.consumer = consumer
            entry.deliveries += 1
            entry.delivered_at = now
            out.append(_delivery(name, group, seq, entry.deliveries, fields))
        return out

    async def redeliver(self, delivery: Delivery, consumer: str) -> Delivery | None:
        s, g = self._group(delivery.stream, delivery.group)
        seq = int(delivery.entry_id)
        if seq not in g.pending:
            return None
        claimed = self._claim(delivery.stream, delivery.group, s, g, consumer, [seq])
        return claimed[0] if claimed else None

    async def ack(self, stream: str, group: str, entry_ids: Sequence[str]) -> int:
        _, g = self._group(stream, group)
        acked = 0
        for entry_id in entry_ids:
            if g.pending.pop(int(entry_id), None) is not None:
                acked += 1
        return acked

    async def _dead_letter(self, delivery: Delivery, dead: Message, dlq: str) -> None:
        self._add(dlq, to_fields(dead))
        await self.ack(delivery.stream, delivery.group, [delivery.entry_id])

    async def read_stream(self, stream: str, count: int = 1000) -> list[Message]:
        s = self._streams.get(stream)
        if s is None:
            return []
        return [
            from_fields(fields, str(s.first_seq + i)) for i, fields in enumerate(s.entries[:count])
        ]

    async def pending(self, stream: str, group: str) -> int:
        return len(self._group(stream, group)[1].pending)

    async def lag(self, stream: str, group: str) -> int | None:
        s, g = self._group(stream, group)
        return max(0, s.end - max(g.next_seq, s.first_seq))

    def inject_raw(self, stream: str, fields: dict[bytes, bytes]) -> str:
        """Append a raw entry (tests use it to put malformed entries on a stream)."""
        return self._add(stream, dict(fields))


def _delivery(stream: str, group: str, seq: int, count: int, fields: Fields) -> Delivery:
    entry_id = str(seq)
    try:
        message = from_fields(fields, entry_id)
    except MalformedMessage as exc:
        return Delivery(stream, group, entry_id, count, None, str(exc), fields)
    return Delivery(stream, group, entry_id, count, message)
