"""Broadcast topics (troupe.brokers.tail) on every broker: fan-out, from-now, in order."""

from __future__ import annotations

import uuid

import pytest

from troupe.brokers import Broker, Message

pytestmark = pytest.mark.broker


def msg(n: int) -> Message:
    return Message(str(n).encode(), None, {})


async def fetch_all(tail: object, count: int) -> list[bytes]:
    got: list[bytes] = []
    for _ in range(50):
        got += [m.body for m in await tail.fetch(0.2)]  # type: ignore[attr-defined]
        if len(got) >= count:
            break
    return got


async def test_every_tail_gets_what_was_broadcast_after_it_opened(broker: Broker) -> None:
    topic = f"t.{uuid.uuid4().hex[:8]}"
    await broker.broadcast(topic, [msg(0)])  # before any tail: nobody gets it
    first, second = await broker.tail(topic), await broker.tail(topic)
    try:
        await broker.broadcast(topic, [msg(1), msg(2)])
        await broker.broadcast(topic, [msg(3)])
        assert await fetch_all(first, 3) == [b"1", b"2", b"3"]
        assert await fetch_all(second, 3) == [b"1", b"2", b"3"]
        assert await first.fetch(0.05) == []
    finally:
        await first.close()
        await second.close()


async def test_batches_queued_before_their_acks_arrive_in_order(broker: Broker) -> None:
    """``broadcast_queued`` returns once a batch is queued: the next batch may follow
    before the first is acknowledged, and tails still get everything in order."""
    topic = f"t.{uuid.uuid4().hex[:8]}"
    tail = await broker.tail(topic)
    try:
        sent = [
            await broker.broadcast_queued(topic, [msg(3 * i), msg(3 * i + 1), msg(3 * i + 2)])
            for i in range(10)
        ]
        for acked in sent:
            await acked  # each completes, without error
        assert await fetch_all(tail, 30) == [str(n).encode() for n in range(30)]
    finally:
        await tail.close()
