"""A bridge reads its lag beside its fetches: a slow or failing reading holds no page back."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import pytest

from tests.helpers import eventually
from troupe import Actor, ActorSystem
from troupe.brokers import ConsumerBridge, MemoryBroker
from troupe.brokers.memory import MemorySession

MESSAGES = 500  # five pages of the bridge's default batch (100)


class Collector(Actor):
    def __init__(self, seen: list[Any]) -> None:
        self.seen = seen

    def receive(self, message: Any) -> None:
        self.seen.append(message)


async def drain_with_lag(lag: Any) -> list[Any]:
    """Every message through a bridge whose session reads its lag with ``lag``."""
    broker = MemoryBroker()
    await broker.publish_messages("s", [broker.message(i) for i in range(MESSAGES)])
    seen: list[Any] = []
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(MemorySession, "lag", lag)
        async with ActorSystem() as system:
            target = system.spawn(Collector, seen)
            system.spawn(ConsumerBridge, broker, "s", "g", target, consumer="c")
            stats = broker.stats.consumer("s", "g", "c")
            await eventually(lambda: stats.acked == MESSAGES, timeout=10)
    return seen


async def test_a_lag_reading_that_never_returns_holds_no_page_back() -> None:
    readings: list[int] = []

    async def stuck(self: MemorySession) -> int | None:
        readings.append(1)
        await asyncio.Event().wait()  # a broker that never answers this question
        return None

    seen = await drain_with_lag(stuck)
    assert seen == list(range(MESSAGES))  # all pages, in order, while the reading hangs
    assert readings == [1]  # one reading at a time: none started while one is pending


async def test_a_lag_reading_that_fails_is_logged_and_the_bridge_goes_on(
    caplog: pytest.LogCaptureFixture,
) -> None:
    async def broken(self: MemorySession) -> int | None:
        raise RuntimeError("lag exploded")

    with caplog.at_level(logging.ERROR, logger="troupe.brokers.consumer"):
        seen = await drain_with_lag(broken)
    assert seen == list(range(MESSAGES))
    failed = [r for r in caplog.records if "reading its lag failed" in r.getMessage()]
    assert failed and failed[0].exc_info is not None
    assert "lag exploded" in str(failed[0].exc_info[1])
