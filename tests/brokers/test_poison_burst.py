"""Failure is per message: a burst of poison messages ahead of healthy ones, on every broker.

Default settings throughout (the target's restart policy, the bridge's retry and
``max_deliveries``): the poison costs each poison message its own retries and
nothing else. The healthy messages behind the burst finish within three times
their time without it, plus a second; each poison message is dead-lettered
after exactly ``max_deliveries`` handler starts (counted by the test itself),
and no healthy message reaches the dead-letter queue.
"""

from __future__ import annotations

import time
import uuid
from typing import Any

from tests.helpers import eventually
from troupe import Actor, ActorSystem
from troupe.brokers import Broker, ConsumerBridge
from troupe.brokers.message import DELIVERIES, ERROR_REASON

HEALTHY = 500
POISON = 10
MAX_DELIVERIES = 5  # ConsumerBridge's default, asserted below


class Handler(Actor):
    """Fails every payload that starts with "poison"; records the rest."""

    def __init__(self, healthy: list[Any], poison_starts: dict[str, int]) -> None:
        self.healthy = healthy
        self.poison_starts = poison_starts

    def receive(self, message: Any) -> Any:
        if isinstance(message, str) and message.startswith("poison"):
            self.poison_starts[message] = self.poison_starts.get(message, 0) + 1
            raise ValueError(f"cannot digest {message}")
        self.healthy.append(message)
        return None


async def healthy_seconds(broker: Broker, poison: int) -> tuple[float, dict[str, int], str]:
    """Publish ``poison`` poison messages, then the healthy ones; seconds until every
    healthy one was handled (from the bridge's start), the poison starts, the stream."""
    stream = f"burst-{uuid.uuid4().hex[:8]}"
    for i in range(poison):
        await broker.publish(stream, f"poison-{i}")
    for i in range(HEALTHY):
        await broker.publish(stream, {"n": i})
    healthy: list[Any] = []
    starts: dict[str, int] = {}
    async with ActorSystem() as system:  # default restart policy
        target = system.spawn(Handler, healthy, starts)
        bridge = system.spawn(ConsumerBridge, broker, stream, "g", target)
        assert system.cell_of(bridge).actor.max_deliveries == MAX_DELIVERIES  # type: ignore[attr-defined]
        began = time.monotonic()
        await eventually(lambda: len(healthy) >= HEALTHY, timeout=120)
        took = time.monotonic() - began
        await eventually(
            lambda: sum(starts.values()) >= poison * MAX_DELIVERIES, timeout=60
        )
        await eventually(
            lambda: system.cell_of(bridge).actor.stats.dead_lettered >= poison,  # type: ignore[attr-defined]
            timeout=30,
        )
    assert sorted(m["n"] for m in healthy) == list(range(HEALTHY))  # each once
    return took, starts, stream


async def test_poison_ahead_of_healthy_costs_the_healthy_no_more_than_their_share(
    broker: Broker,
) -> None:
    clean, _, _ = await healthy_seconds(broker, 0)
    burst, starts, stream = await healthy_seconds(broker, POISON)
    assert burst <= 3 * clean + 1.0, (burst, clean)
    assert starts == {f"poison-{i}": MAX_DELIVERIES for i in range(POISON)}
    dead = await broker.dead_letters(stream)
    assert sorted(broker.serializer.loads(d.body) for d in dead) == sorted(starts)
    assert all(d.headers[DELIVERIES] == str(MAX_DELIVERIES) for d in dead)
    assert all("cannot digest poison" in d.headers[ERROR_REASON] for d in dead)
