"""A ``receive_batch`` target behind a ConsumerBridge, on every broker.

The bridge hands each fetched page to the target in one ``deliver_page``; an actor
with ``receive_batch`` gets it in one call. Every message's start is journaled
before the call; a raised exception fails the whole page (each message's attempt
counted, each retried); an item the handler rejects fails alone.
"""

from __future__ import annotations

import uuid
from typing import Any

from tests.helpers import eventually
from troupe import Actor, ActorSystem, Backoff, Queued
from troupe.brokers import Broker, ConsumerBridge
from troupe.brokers.message import ATTEMPT, DELIVERIES, ERROR_REASON

FAST_RETRY = Backoff(initial=0.01, maximum=0.05, multiplier=2.0, jitter="none")
COUNT = 30


class Writer(Actor):
    """Writes pages: the first call fails (a transient database error), poison items are
    rejected one by one, the rest recorded with the attempt number they came with."""

    def __init__(self, calls: list[list[tuple[Any, str]]], written: list[tuple[Any, str]]) -> None:
        self.calls = calls
        self.written = written

    async def receive_batch(self, batch: list[Queued]) -> None:
        self.calls.append([(q.message, q.headers[ATTEMPT]) for q in batch])
        if len(self.calls) == 1:
            raise ConnectionError("database unavailable")
        for queued in batch:
            if isinstance(queued.message, str):
                queued.reject(ValueError(f"cannot write {queued.message}"))
            else:
                self.written.append((queued.message, queued.headers[ATTEMPT]))


async def test_a_failed_page_counts_an_attempt_per_message_and_a_rejected_item_fails_alone(
    broker: Broker,
) -> None:
    stream = f"batch-{uuid.uuid4().hex[:8]}"
    await broker.publish(stream, "poison")
    for i in range(COUNT):
        await broker.publish(stream, {"n": i})
    calls: list[list[tuple[Any, str]]] = []
    written: list[tuple[Any, str]] = []
    async with ActorSystem() as system:
        target = system.spawn(Writer, calls, written)
        bridge = system.spawn(ConsumerBridge, broker, stream, "g", target, retry=FAST_RETRY)
        stats = system.cell_of(bridge).actor.stats  # type: ignore[attr-defined]
        await eventually(lambda: len(written) >= COUNT and stats.dead_lettered >= 1, timeout=60)
        await eventually(lambda: stats.acked >= COUNT, timeout=30)
    first = {m["n"] for m, _ in calls[0] if isinstance(m, dict)}
    assert first, "the first page held healthy messages"
    assert all(attempt == "1" for _, attempt in calls[0])
    # each healthy message written once: attempt 2 if it was in the failed page, else 1
    assert sorted(m["n"] for m, _ in written) == list(range(COUNT))
    assert all(attempt == ("2" if m["n"] in first else "1") for m, attempt in written)
    dead = await broker.dead_letters(stream)
    assert [broker.serializer.loads(d.body) for d in dead] == ["poison"]
    assert dead[0].headers[DELIVERIES] == "5"  # max_deliveries starts, the failed page's included
    assert "cannot write poison" in dead[0].headers[ERROR_REASON]
    poison_starts = [a for call in calls for m, a in call if m == "poison"]
    assert poison_starts == ["1", "2", "3", "4", "5"]
