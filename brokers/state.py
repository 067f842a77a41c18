"""Durable entity state and shard leases: the broker-neutral interfaces, kept in memory.

An entity's record is its state (JSON text) and the *position* of the last message
applied to it (the source's entry id: a Redis entry id, a Kafka ``partition:offset``, a
memory sequence number). Saving both in one write is what lets a consumer recognise a
redelivered message: its position is at or before the saved one.

- :class:`StateStore`: ``load`` / ``save`` records of one shard (a Kafka partition or a
  shard stream); ``save`` may carry a :class:`Fence` (shard, token) that the store
  checks atomically with the write, so an owner that lost its shard cannot overwrite the
  next owner's state (:class:`StateFenced`). Stores: :class:`MemoryStateStore` here,
  ``troupe.brokers.redis.RedisStateStore`` (one hash per entity type) and
  ``troupe.brokers.kafka.KafkaChangelogStore`` (a compacted changelog topic).
- :class:`ShardLeases`: one owner per shard at a time, with a fencing token that grows
  with every acquisition, and a member list for balancing (``heartbeat``).
  :class:`MemoryShardLeases` here, ``troupe.brokers.redis.RedisShardLeases`` on Redis.

>>> import asyncio
>>> async def demo():
...     leases = MemoryShardLeases()
...     store = MemoryStateStore(leases)
...     token = await leases.acquire("cart", 0, "a", ttl=5)
...     await store.save("cart", 0, {"k": Saved('{"n": 1}', "7")}, Fence(0, token))
...     return (await store.load("cart", 0, ["k"]))["k"].position
>>> asyncio.run(demo())
'7'
"""

from __future__ import annotations

import re
import time
from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

from .base import BrokerError

_NUMBERS = re.compile(r"\d+")


def position_key(entry_id: str) -> tuple[int, ...]:
    """An entry id as a tuple that orders like the source: ``"1700-3"`` -> (1700, 3),
    ``"2:41"`` -> (2, 41), ``"17"`` -> (17,).

    >>> position_key("1700-3") < position_key("1700-10")
    True
    """
    return tuple(int(n) for n in _NUMBERS.findall(entry_id))


@dataclass(frozen=True, slots=True)
class Saved:
    """One entity's record: its state as JSON text and the position last applied."""

    state: str
    position: str


@dataclass(frozen=True, slots=True)
class Fence:
    """The lease a save is made under: the store refuses it once ``token`` is not the
    shard's current one."""

    shard: int
    token: int


class StateFenced(BrokerError):
    """A save was refused: the saver no longer holds the shard's lease."""


class StateStore(ABC):
    """Where entity records live; ``kind`` names the entity type (one hash, one topic)."""

    @abstractmethod
    async def load(self, kind: str, shard: int, keys: Sequence[str]) -> dict[str, Saved]:
        """The records of ``keys`` (of ``shard``) that exist."""

    @abstractmethod
    async def save(
        self, kind: str, shard: int, records: Mapping[str, Saved], fence: Fence | None = None
    ) -> None:
        """Write ``records`` in one step; raises :class:`StateFenced` when ``fence`` is
        no longer the shard's lease (nothing is written then)."""

    async def release(self, kind: str, shard: int) -> None:  # noqa: B027 - optional hook
        """This process no longer hosts ``shard``: forget what is cached of it."""

    async def close(self) -> None:  # noqa: B027 - optional hook
        """Free connections (the broker's are not closed)."""


class ShardLeases(ABC):
    """One owner per (kind, shard) at a time, fenced by a growing token."""

    @abstractmethod
    async def acquire(self, kind: str, shard: int, member: str, *, ttl: float) -> int | None:
        """Take a free shard for ``ttl`` seconds; its fencing token, or None when held."""

    @abstractmethod
    async def renew(self, kind: str, shard: int, token: int, *, ttl: float) -> bool:
        """Extend the lease; False when it was lost (expired and perhaps taken)."""

    @abstractmethod
    async def release(self, kind: str, shard: int, token: int) -> None:
        """Give the shard up (ignored when ``token`` is no longer the lease)."""

    @abstractmethod
    async def heartbeat(self, kind: str, member: str, *, ttl: float) -> list[str]:
        """Mark ``member`` alive for ``ttl`` seconds; the live members, sorted."""

    @abstractmethod
    async def leave(self, kind: str, member: str) -> None:
        """Remove ``member`` from the live members at once."""


class MemoryShardLeases(ShardLeases):
    """Leases in this process (the memory broker and tests); ``clock`` gives seconds."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._leases: dict[tuple[str, int], tuple[int, float]] = {}  # token, expiry
        self._tokens: dict[str, int] = {}
        self._members: dict[tuple[str, str], float] = {}

    def holds(self, kind: str, shard: int, token: int) -> bool:
        """True while ``token`` is the live lease of the shard."""
        lease = self._leases.get((kind, shard))
        return lease is not None and lease[0] == token and lease[1] > self._clock()

    async def acquire(self, kind: str, shard: int, member: str, *, ttl: float) -> int | None:
        lease = self._leases.get((kind, shard))
        now = self._clock()
        if lease is not None and lease[1] > now:
            return None
        token = self._tokens[kind] = self._tokens.get(kind, 0) + 1
        self._leases[(kind, shard)] = (token, now + ttl)
        return token

    async def renew(self, kind: str, shard: int, token: int, *, ttl: float) -> bool:
        if not self.holds(kind, shard, token):
            return False
        self._leases[(kind, shard)] = (token, self._clock() + ttl)
        return True

    async def release(self, kind: str, shard: int, token: int) -> None:
        if self.holds(kind, shard, token):
            del self._leases[(kind, shard)]

    async def heartbeat(self, kind: str, member: str, *, ttl: float) -> list[str]:
        now = self._clock()
        self._members[(kind, member)] = now + ttl
        return sorted(m for (k, m), due in self._members.items() if k == kind and due > now)

    async def leave(self, kind: str, member: str) -> None:
        self._members.pop((kind, member), None)


class MemoryStateStore(StateStore):
    """Records in a dict (tests, the memory broker); fenced by ``leases`` when given."""

    def __init__(self, leases: MemoryShardLeases | None = None) -> None:
        self.leases = leases
        self.records: dict[tuple[str, str], Saved] = {}

    async def load(self, kind: str, shard: int, keys: Sequence[str]) -> dict[str, Saved]:
        records = self.records
        return {k: r for k in keys if (r := records.get((kind, k))) is not None}

    async def save(
        self, kind: str, shard: int, records: Mapping[str, Saved], fence: Fence | None = None
    ) -> None:
        leases = self.leases
        if fence is not None and leases is not None and not leases.holds(
            kind, fence.shard, fence.token
        ):
            raise StateFenced(f"{kind} shard {fence.shard}: lease {fence.token} was lost")
        for key, record in records.items():
            self.records[(kind, key)] = record


__all__ = [
    "Fence",
    "MemoryShardLeases",
    "MemoryStateStore",
    "Saved",
    "ShardLeases",
    "StateFenced",
    "StateStore",
    "position_key",
]
