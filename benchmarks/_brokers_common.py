"""What the broker benchmarks share: the counting sink actor and paired ratios."""

from __future__ import annotations

import asyncio
import time
from typing import Any

from troupe import Actor, ActorSystem
from troupe.brokers import BYTES, Broker, ProducerBridge


class Sink(Actor):
    """Counts messages; resolves ``done`` at ``total``."""

    def __init__(self, total: int, done: asyncio.Future[float]) -> None:
        self.total = total
        self.count = 0
        self.done = done

    def receive(self, message: Any) -> None:
        self.count += 1
        if self.count == self.total and not self.done.done():
            self.done.set_result(time.perf_counter())


def paired(troupe_rates: list[float], raw_rates: list[float]) -> list[float]:
    """Each run's troupe/raw ratio (the two ran back to back, under the same load)."""
    return [round(t / r, 3) for t, r in zip(troupe_rates, raw_rates, strict=True)]


async def time_producer_bridge(
    broker: Broker, stream: str, n: int, payload: bytes, batch: int
) -> float:
    """Seconds for ``n`` told payloads through a ProducerBridge until the broker confirmed all."""
    async with ActorSystem("bench") as system:
        producer = system.spawn(ProducerBridge, broker, stream, serializer=BYTES, batch=batch)
        stats = broker.stats.producer(producer.name)
        start = time.perf_counter()
        for _ in range(n):
            await producer.tell(payload)
        while stats.published < n:  # noqa: ASYNC110
            await asyncio.sleep(0.0005)
        return time.perf_counter() - start
