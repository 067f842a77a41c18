"""Broadcast topics of the in-memory broker: a bounded queue per open tail."""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Sequence

from .message import Message
from .tail import TOPIC_BACKLOG, Tail


class MemoryTopics:
    """The open tails of each topic; a broadcast appends to each of them."""

    def __init__(self) -> None:
        self._tails: dict[str, set[MemoryTail]] = {}

    def broadcast(self, topic: str, messages: Sequence[Message]) -> None:
        """Hand ``messages`` to every tail open on ``topic`` (dropped when none is)."""
        for tail in self._tails.get(topic, ()):
            tail.put(messages)

    def open(self, topic: str) -> MemoryTail:
        """A tail of ``topic`` from now on."""
        tail = MemoryTail(topic, self)
        self._tails.setdefault(topic, set()).add(tail)
        return tail

    def remove(self, tail: MemoryTail) -> None:
        """Forget a closed tail."""
        tails = self._tails.get(tail.topic)
        if tails is not None:
            tails.discard(tail)
            if not tails:
                del self._tails[tail.topic]


class MemoryTail(Tail):
    """One tail of a memory topic (its backlog keeps the newest ``TOPIC_BACKLOG``)."""

    def __init__(self, topic: str, topics: MemoryTopics) -> None:
        super().__init__(topic)
        self._topics = topics
        self._backlog: deque[Message] = deque(maxlen=TOPIC_BACKLOG)
        self._arrived = asyncio.Event()

    def put(self, messages: Sequence[Message]) -> None:
        """Messages broadcast on the topic."""
        self._backlog.extend(messages)
        self._arrived.set()

    async def fetch(self, timeout: float) -> list[Message]:
        if not self._backlog and timeout > 0:
            self._arrived.clear()
            try:
                async with asyncio.timeout(timeout):
                    await self._arrived.wait()
            except TimeoutError:
                pass
        out = list(self._backlog)
        self._backlog.clear()
        return out

    async def close(self) -> None:
        self._topics.remove(self)


__all__ = ["MemoryTail", "MemoryTopics"]
