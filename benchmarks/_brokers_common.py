"""What the broker benchmarks share: the counting sink actor and paired ratios."""

from __future__ import annotations

import asyncio
import time
from typing import Any

from troupe import Actor


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
