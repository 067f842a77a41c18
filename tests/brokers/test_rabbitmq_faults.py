"""RabbitMQ under faults: a broker restart during publish and consume, with confirms."""

from __future__ import annotations

import asyncio
from typing import Any

from tests.brokers.helpers import TOLERANT
from tests.helpers import eventually
from troupe import Actor, ActorSystem
from troupe.brokers import ConsumerBridge, ProducerBridge, connect
from troupe.brokers.message import MESSAGE_ID
from troupe.brokers.rabbitmq import RabbitBroker
from troupe.brokers.servers.rabbitmq import RabbitServer
from troupe.supervisors import Backoff

FAST = Backoff(initial=0.05, maximum=0.5, jitter="none")


class Collect(Actor):
    """Records the message id of every handled delivery."""

    def __init__(self, seen: list[str]) -> None:
        self.seen = seen

    def receive(self, message: Any) -> None:
        self.seen.append(self.headers[MESSAGE_ID])


async def test_broker_restart_during_publish_and_consume_loses_no_confirmed_message(
    rabbitmq_server: RabbitServer, rabbitmq_url: str
) -> None:
    """Asked publishes retry through the outage until confirmed; every confirmed message
    is consumed (at least once) after the node came back."""
    consumer_broker = connect(rabbitmq_url, reconnect=FAST)
    producer_broker = connect(rabbitmq_url, reconnect=FAST)
    seen: list[str] = []
    confirmed: list[str] = []
    total = 400
    async with ActorSystem(restart=TOLERANT, shutdown_timeout=20) as system:
        target = system.spawn(Collect, seen)
        system.spawn(ConsumerBridge, consumer_broker, "work", "g", target, block=0.05, retry=FAST)
        producer = system.spawn(
            ProducerBridge, producer_broker, "work", delivery_timeout=90, retry=FAST
        )

        async def publish_all() -> None:
            for i in range(total):
                confirmed.append(await producer.ask({"n": i}, timeout=90))
                await asyncio.sleep(0.002)

        publishing = asyncio.create_task(publish_all())
        await eventually(lambda: len(seen) >= 50, timeout=30)
        await asyncio.to_thread(rabbitmq_server.restart)  # graceful stop, then start
        await publishing
        assert len(confirmed) == total
        await eventually(lambda: set(confirmed) <= set(seen), timeout=60)
        stats = producer_broker.stats.producer(system.cell_of(producer).actor.name)
        assert stats.failed == 0
        assert stats.retries > 0  # the outage hit publishing
        [consumer] = consumer_broker.stats.consumers.values()
        assert consumer.connection_failures > 0  # and consuming
    assert isinstance(consumer_broker, RabbitBroker)
    assert await consumer_broker.dead_letters("work") == []
    await consumer_broker.close()
    await producer_broker.close()
