"""Broadcast topics on RabbitMQ: one direct exchange, a queue per tail bound by topic.

Every topic is a routing key of the exchange ``troupe.tail`` (declared once, not
durable); a tail is an exclusive, auto-delete, server-named queue bound with its
topic (``x-max-length`` bounds its backlog), consumed with auto ack. A broadcast
to a topic nobody tails is dropped by the exchange, and nothing outlives the
connections of the tails.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import pika

from ..message import Message
from ..tail import TOPIC_BACKLOG, Tail
from .connection import AmqpChannel, coalesce_output, settle

if TYPE_CHECKING:
    from .broker import RabbitBroker

EXCHANGE = "troupe.tail"
_PLAIN = pika.BasicProperties()


async def declare_exchange(broker: RabbitBroker) -> None:
    """Declare ``troupe.tail`` once per connection."""
    await broker.connect()
    if EXCHANGE not in broker._declared:
        await broker._declare(
            "exchange",
            EXCHANGE,
            "exchange_declare",
            exchange=EXCHANGE,
            exchange_type="direct",
            durable=False,
        )
        broker._declared.add(EXCHANGE)


async def broadcast(broker: RabbitBroker, topic: str, messages: Sequence[Message]) -> None:
    """Publish each message to ``troupe.tail`` with ``topic`` as its routing key."""
    await declare_exchange(broker)
    channel = (await broker._channel()).check()
    for message in messages:  # the body alone: a topic is troupe's own channel
        channel.basic_publish(EXCHANGE, topic, message.body, _PLAIN)
    coalesce_output(channel.connection)  # the batch's frames in one write


class RabbitTail(Tail):
    """A tail: its own channel and exclusive queue, messages buffered as they are pushed."""

    def __init__(self, topic: str, channel: AmqpChannel) -> None:
        super().__init__(topic)
        self._channel = channel
        self._buffer: deque[Message] = deque()
        self._arrived = asyncio.Event()

    @classmethod
    async def open(cls, broker: RabbitBroker, topic: str) -> RabbitTail:
        """Declare and bind the tail's queue, and start consuming it."""
        await declare_exchange(broker)
        assert broker._connection is not None
        channel = await broker._connection.channel()
        tail = cls(topic, channel)
        try:
            frame = await channel.call(
                "queue_declare",
                queue="",
                exclusive=True,
                auto_delete=True,
                arguments={"x-max-length": TOPIC_BACKLOG},
            )
            queue = frame.method.queue
            await channel.call("queue_bind", queue=queue, exchange=EXCHANGE, routing_key=topic)
            future = channel.future()
            channel.check().basic_consume(
                queue,
                tail._on_message,
                auto_ack=True,
                callback=lambda f: settle(future, f),
            )
            await future
        except BaseException:
            await channel.close()
            raise
        return tail

    def _on_message(self, _: Any, method: Any, properties: Any, body: bytes) -> None:
        self._buffer.append(Message(body, None, {}, "", 0.0))
        self._arrived.set()

    async def fetch(self, timeout: float) -> list[Message]:
        if not self._buffer:
            self._channel.check()  # a closed channel raises its error
            if timeout > 0:
                self._arrived.clear()
                try:
                    async with asyncio.timeout(timeout):
                        await self._arrived.wait()
                except TimeoutError:
                    pass
        out = list(self._buffer)
        self._buffer.clear()
        return out

    async def close(self) -> None:
        await self._channel.close()


__all__ = ["EXCHANGE", "RabbitTail", "broadcast"]
