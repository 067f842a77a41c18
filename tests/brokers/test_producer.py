"""ProducerBridge on every broker: batching, ask confirmations, delayed publish, metrics,
settings, retries until the delivery timeout."""

from __future__ import annotations

import asyncio
import time
import urllib.request
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families

from troupe import ActorSystem, Backoff, ConfigError
from troupe.brokers import Broker, BrokerError, ProducerBridge, Publish, PublishError
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
        if not broker.capabilities.delayed:  # refused at once, not retried for 120 s
            with pytest.raises(PublishError, match="no delayed delivery"):
                await producer.ask(Publish("later", delay=0.2), timeout=5)
            return
        await producer.ask(Publish("later", delay=0.2))
        assert await broker.read_stream("out") == []
        await asyncio.sleep(0.25)
        moved = await broker.promote_due("out")  # RabbitMQ moves it itself (TTL + DLX): 0
        assert moved == (0 if broker.capabilities.name == "rabbitmq" else 1)
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
        assert system.cell_of(producer).restarts == 0


def scrape(url: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    with urllib.request.urlopen(url, timeout=10) as response:
        text = response.read().decode()
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


async def test_a_batch_counts_every_message_in_metrics_and_answers_every_asker(
    broker: Broker,
) -> None:
    async with ActorSystem("shop", metrics_port=0) as system:
        producer = system.spawn(ProducerBridge, broker, "out", name="out-producer")
        asks = []
        for i in range(50):  # all queued before the bridge's turn: one batch
            if i % 2:
                asks.append(producer.ask({"n": i}))
            else:
                producer.tell({"n": i})
        ids = await asyncio.gather(*asks)
        stats = broker.stats.producer(producer.name)
        deadline = time.monotonic() + 10
        while stats.published < 50:
            assert time.monotonic() < deadline
            await asyncio.sleep(0.01)
        assert system.metrics_endpoint is not None
        samples = await asyncio.to_thread(scrape, system.metrics_endpoint.url)
    labels = (("actor", "out-producer"), ("outcome", "ok"))
    assert samples[("troupe_messages_total", labels)] == 50
    assert stats.batches == 1
    stored = await broker.read_stream("out")
    assert [broker.serializer.loads(m.body) for m in stored] == [{"n": i} for i in range(50)]
    assert ids == [m.id for m in stored[1::2]]


async def test_a_batch_takes_up_to_500_queued_messages_by_default(broker: Broker) -> None:
    async with ActorSystem() as system:
        producer = system.spawn(ProducerBridge, broker, "out")
        for i in range(900):  # all queued before the bridge's first turn
            producer.tell({"n": i})
        stats = broker.stats.producer(producer.name)
        deadline = time.monotonic() + 20
        while stats.published < 900:
            assert time.monotonic() < deadline
            await asyncio.sleep(0.01)
    assert stats.batches == 2  # 500 (the one handled and 499 queued behind it), then 400
    stored = await broker.read_stream("out")
    assert [broker.serializer.loads(m.body) for m in stored] == [{"n": i} for i in range(900)]


@pytest.mark.parametrize("bad", [0, -1.0, "1", True, float("nan")])
async def test_delivery_timeout_is_checked_at_spawn(broker: Broker, bad: Any) -> None:
    async with ActorSystem() as system:
        with pytest.raises(ConfigError, match="delivery_timeout"):
            system.spawn(ProducerBridge, broker, "out", delivery_timeout=bad)


async def test_a_failed_publish_is_retried_until_the_delivery_timeout_then_reported_once(
    broker: Broker,
) -> None:
    """A broker that refuses every publish (not a connection problem): the batch is retried
    with backoff until delivery_timeout, each asker learns the failure once, told ones count."""
    calls: list[float] = []

    async def refuse(*args: Any, **kwargs: Any) -> list[str]:
        calls.append(time.monotonic())
        raise BrokerError("refused by the test broker")

    broker.publish_once = refuse  # type: ignore[method-assign]
    fast = Backoff(initial=0.02, maximum=0.05, jitter="none")
    async with ActorSystem() as system:
        producer = system.spawn(ProducerBridge, broker, "out", delivery_timeout=0.3, retry=fast)
        head = producer.ask("head")
        queued = [producer.ask(i) for i in range(3)]
        producer.tell("told")
        results = await asyncio.gather(head, *queued, return_exceptions=True)
        stats = broker.stats.producer(producer.name)
        assert system.cell_of(producer).restarts == 0  # reported, the bridge did not fail
    assert all(isinstance(r, PublishError) for r in results), results
    assert "delivery_timeout" in str(results[1])
    assert isinstance(results[1].__cause__, BrokerError)
    assert calls[-1] - calls[0] >= 0.25  # retried through the timeout, not a fixed count
    assert len(calls) >= 5
    assert stats.failed == 5
    assert stats.published == 0
    assert stats.retries == len(calls) - 1


async def test_a_publish_in_flight_when_its_bridge_is_killed_is_left_to_finish(
    broker: Broker,
) -> None:
    """A bridge killed mid-publish tells its asker it may or may not be stored, and does not
    cancel the publish: one the client had not written yet would otherwise be lost."""
    in_flight: list[int] = []
    async with ActorSystem() as system:
        for i in range(8):  # killed after 0..7 loop steps: before, during, after the publish
            producer = system.spawn(ProducerBridge, broker, "killed")
            answer = asyncio.ensure_future(producer.ask({"n": i}))
            for _ in range(i):
                await asyncio.sleep(0)
            system.cell_of(producer).kill()
            try:
                await answer
            except PublishError as exc:
                if "before the broker confirmed" in str(exc):
                    in_flight.append(i)
            except Exception:
                pass  # killed before it handled the ask: nothing was sent
        assert in_flight, "no kill landed while a publish was in flight"
        deadline = time.monotonic() + 10
        while True:
            messages = await broker.read_stream("killed")
            stored = {broker.serializer.loads(m.body)["n"] for m in messages}
            if set(in_flight) <= stored or time.monotonic() > deadline:
                break
            await asyncio.sleep(0.05)
        assert set(in_flight) <= stored, (in_flight, stored)
