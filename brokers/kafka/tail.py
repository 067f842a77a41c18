"""Broadcast topics on Kafka: a topic each, read without a group from its end at open.

Every record of a topic carries the same key, so it lands in one partition and
tails read it in broadcast order; a tail is a group-less consumer assigned all of
the topic's partitions and positioned at their ends when it opens. Retention
bounds what a topic keeps (Kafka's usual settings).
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from aiokafka import AIOKafkaConsumer, TopicPartition

from ..base import BrokerError
from ..message import Message
from ..tail import TOPIC_BACKLOG, Tail
from .wire import from_record, to_record

if TYPE_CHECKING:
    from .broker import KafkaBroker

#: The key of every broadcast record: one partition, one order.
KEY = b"troupe.tail"


async def broadcast(broker: KafkaBroker, topic: str, messages: Sequence[Message]) -> None:
    """Produce ``messages`` to ``topic`` (one partition) and wait for the acks."""
    await (await broadcast_queued(broker, topic, messages))


async def broadcast_queued(
    broker: KafkaBroker, topic: str, messages: Sequence[Message]
) -> asyncio.Future[None]:
    """Hand ``messages`` to the producer in order (one partition); the future is their
    acks (a failure: BrokerError). A later call's records follow these."""
    name = broker.topic(topic)
    await broker.ensure_topic(name)
    producer = await broker.producer()
    async with broker.errors(f"broadcast to {name}"):
        sent = []
        for message in messages:
            _key, value, headers, timestamp = to_record(message)
            sent.append(
                await producer.send(name, value, key=KEY, headers=headers, timestamp_ms=timestamp)
            )
    return asyncio.ensure_future(_acked(broker, name, sent))


async def _acked(broker: KafkaBroker, name: str, sent: list[asyncio.Future[Any]]) -> None:
    async with broker.errors(f"broadcast to {name}"):
        await asyncio.gather(*sent)


async def _partitions(broker: KafkaBroker, topic: str) -> list[TopicPartition]:
    """The topic's partitions, once the cluster's metadata lists them (a topic just
    created may not be listed yet)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + broker.request_timeout
    while True:
        partitions = await broker._partitions(topic)
        if partitions:
            return partitions
        if loop.time() > deadline:
            raise BrokerError(f"kafka topic {topic} has no partitions on {broker.url}")
        await asyncio.sleep(0.05)


class KafkaTail(Tail):
    """A group-less consumer of the topic, from the end it had when the tail opened."""

    def __init__(self, broker: KafkaBroker, topic: str, consumer: AIOKafkaConsumer) -> None:
        super().__init__(topic)
        self._broker = broker
        self._consumer = consumer

    @classmethod
    async def open(cls, broker: KafkaBroker, topic: str) -> KafkaTail:
        """Create the topic if needed, assign its partitions and seek to their ends."""
        name = broker.topic(topic)
        await broker.ensure_topic(name)
        consumer = broker.consumer(
            enable_auto_commit=False, auto_offset_reset="latest", fetch_max_wait_ms=100
        )
        async with broker.errors(f"tail {name}"):
            await consumer.start()
            try:
                partitions = await _partitions(broker, name)
                consumer.assign(partitions)
                await consumer.seek_to_end(*partitions)
                for partition in partitions:
                    await consumer.position(partition)  # the end, resolved now
            except BaseException:
                await consumer.stop()
                raise
        return cls(broker, name, consumer)

    async def fetch(self, timeout: float) -> list[Message]:
        async with self._broker.errors(f"tail {self.topic}"):
            batch: Any = await self._consumer.getmany(
                timeout_ms=int(timeout * 1000), max_records=TOPIC_BACKLOG
            )
        out: list[Message] = []
        for records in batch.values():
            for r in records:
                message, _error, _raw = from_record(
                    self.topic, r.partition, r.offset, r.key, r.value, r.headers, r.timestamp
                )
                if message is not None:
                    out.append(message)
        return out

    async def close(self) -> None:
        await self._consumer.stop()


__all__ = ["KafkaTail", "broadcast", "broadcast_queued"]
