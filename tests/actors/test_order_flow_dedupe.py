"""OrderFlow publishes a saga's outcome once per saga id: a re-sent ``SagaFinished`` (the saga
log delivers outcomes at least once) is dropped by the flow's bounded recent ids, and across a
restart or another process (a fresh flow) by its idempotency guard on the shared store."""

from __future__ import annotations

import asyncio
from collections import Counter
from typing import Any

import pytest

from troupe import Actor, ActorSystem
from troupe.actors.bus import EventBus, event_topic
from troupe.actors.idempotency import Idempotent
from troupe.actors.saga_definition import SagaFinished
from troupe.actors.saga_log import SagaStatus
from troupe.brokers.idempotency import MemoryIdempotencyStore
from troupe.examples.orders.service import OrderFlow, RecentIds


class Events(Actor):
    def __init__(self, seen: Counter[str], bus: EventBus) -> None:
        self.seen = seen
        self.bus = bus

    def on_start(self) -> None:
        self.bus.subscribe(self.ref, "#")

    def receive(self, event: Any) -> None:
        self.seen[f"{event_topic(self.headers, event)}:{event.order_id}"] += 1


def confirmed(order_id: str) -> SagaFinished:
    return SagaFinished(order_id, SagaStatus.COMPLETED, {"amount": 5})


def declined(order_id: str) -> SagaFinished:
    return SagaFinished(order_id, SagaStatus.COMPENSATED, {}, "payment", "declined")


def test_recent_ids_are_bounded_and_forget_on_failure() -> None:
    recent = RecentIds(size=3)
    assert [recent.add(k) for k in "abca"] == [True, True, True, False]
    assert recent.add("d") and len(recent) == 3
    assert recent.add("b")  # "b" was the oldest after "a" was seen again: forgotten
    recent.forget("d")
    assert recent.add("d")
    with pytest.raises(ValueError):
        RecentIds(size=0)


async def test_a_resent_outcome_is_published_once() -> None:
    events: Counter[str] = Counter()
    outcomes: Counter[str] = Counter()
    async with ActorSystem("dedupe", metrics=False) as system:
        bus = EventBus(system)
        system.spawn(Events, events, bus, name="events")
        flow = system.spawn(OrderFlow, bus, "saga", outcomes, name="flow")
        for message in [confirmed("o1"), declined("o2"), confirmed("o1"), declined("o2")]:
            await flow.ask(message)
        await flow.ask(confirmed("o1"))
        await _drained(system, events, 5)
    assert outcomes == Counter({"completed:-": 1, "compensated:payment": 1})
    assert events == Counter(
        {
            "PaymentCompleted:o1": 1,
            "OrderConfirmed:o1": 1,
            "PaymentFailed:o2": 1,
            "OrderCancelled:o2": 1,
        }
    ), events


async def test_the_guard_dedupes_across_a_crash_or_another_process() -> None:
    """Two flows with their own recent ids (a restarted process, a second one) share the
    idempotency store: each outcome is published once in all."""
    store = MemoryIdempotencyStore()
    events: Counter[str] = Counter()
    async with ActorSystem("dedupe", metrics=False) as system:
        bus = EventBus(system)
        system.spawn(Events, events, bus, name="events")
        flows = [
            system.spawn(OrderFlow, bus, "saga", guard=Idempotent(store, namespace="t:"))
            for _ in range(2)
        ]
        for flow in flows:
            await flow.ask(confirmed("o1"))
            await flow.ask(declined("o2"))
        await _drained(system, events, 4)
    assert sorted(events.items()) == [
        ("OrderCancelled:o2", 1),
        ("OrderConfirmed:o1", 1),
        ("PaymentCompleted:o1", 1),
        ("PaymentFailed:o2", 1),
    ]


async def _drained(system: ActorSystem, events: Counter[str], expected: int) -> None:
    """Wait until the subscriber has what was published (and a little more, to see extras)."""
    for _ in range(200):
        if sum(events.values()) >= expected:
            break
        await asyncio.sleep(0.005)
    await asyncio.sleep(0.05)
