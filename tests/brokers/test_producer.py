"""ProducerBridge on every broker: batching, ask confirmations, delayed publish."""

from __future__ import annotations

import asyncio
import time

from troupe import ActorSystem
from troupe.brokers import Broker, ProducerBridge, Publish
from troupe.brokers.message import TRACEPARENT


async def test_told_messages_are_published_in_batches_in_order(broker: Broker) -> None:
    async with ActorSystem() as system:
        producer = system.spawn(ProducerBridge, broker, "out", batch=50)
        for i in range(500):
            await producer.tell({"n": i})
        deadline = time.monotonic() + 10
        stats = broker.stats.producer(producer.name)
        while stats.published < 500:
            assert time.monotonic() < deadline
            await asyncio.sleep(0.01)
    assert stats.batches < 500  # queued messages shared round trips
    bodies = [broker.serializer.loads(m.body) for m in await broker.read_stream("out")]
    assert bodies == [{"n": i} for i in range(500)]


async def test_ask_returns_the_message_id_and_keeps_key_headers_and_trace(broker: Broker) -> None:
    async with ActorSystem() as system:
        producer = system.spawn(ProducerBridge, broker)
        message_id = await producer.ask(
            Publish("hi", stream="other", key="k", headers={"x": "1"}),
            headers={TRACEPARENT: "00-abc-def-01"},
        )
    [message] = await broker.read_stream("other")
    assert message.id == message_id
    assert message.key == "k"
    assert message.headers["x"] == "1"
    assert message.headers[TRACEPARENT] == "00-abc-def-01"


async def test_delayed_publish_through_the_producer(broker: Broker) -> None:
    async with ActorSystem() as system:
        producer = system.spawn(ProducerBridge, broker, "out")
        await producer.ask(Publish("later", delay=0.2))
        assert await broker.read_stream("out") == []
        await asyncio.sleep(0.25)
        assert await broker.promote_due("out") == 1
    [message] = await broker.read_stream("out")
    assert broker.serializer.loads(message.body) == "later"


async def test_a_message_without_a_stream_fails_only_its_asker(broker: Broker) -> None:
    from troupe.brokers import PublishError

    async with ActorSystem() as system:
        producer = system.spawn(ProducerBridge, broker)
        try:
            await producer.ask("nowhere")
        except PublishError as exc:
            assert "no stream" in str(exc)
        else:
            raise AssertionError("expected PublishError")
        assert await producer.ask(Publish(1, stream="s"))
