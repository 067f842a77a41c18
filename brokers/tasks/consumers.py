"""The consumers the pool's fetchers read with: dramatiq's, except where a message that does
not decode, or a stop, must lose nothing.

- Redis (:class:`RedisConsumer`): takes (id, data) pairs with
  :class:`~troupe.brokers.tasks.redis_queues.RedisQueues`, dead-letters what does not
  decode (its bytes and the reason) and goes on with the rest, and gives back on stop what
  it fetched and never handed out (:meth:`RedisConsumer.give_back_cached`). dramatiq's
  consumer raises on such a message, stranding the batch fetched with it, and keeps no
  way to return its cache.
- RabbitMQ (:class:`RabbitConsumer`): a message that does not decode is published to
  ``NAME.XQ`` with its body, headers and an ``x-troupe-reason`` header, then acked
  (dramatiq's rejects it: the queue's dead-lettering keeps the bytes, not the reason).
- The stub: dramatiq's own consumer.
"""

from __future__ import annotations

import logging
import time
from collections import deque
from typing import Any

import dramatiq
from dramatiq import Message
from dramatiq.broker import Consumer, MessageProxy
from dramatiq.common import compute_backoff, q_name, xq_name
from dramatiq.errors import ConnectionClosed, DecodeError

from .redis_queues import RedisQueues
from .transport import broker_kind

logger = logging.getLogger(__name__)

REASON_HEADER = "x-troupe-reason"


def undecodable(exc: BaseException) -> str:
    """The dead-letter reason of a message that did not decode."""
    return f"undecodable message: {type(exc).__name__}: {exc}"[:2000]


class RedisConsumer(Consumer):
    """Fetches ``queue`` in batches of up to ``prefetch`` minus the messages handed out
    and not yet settled (see the module docstring)."""

    def __init__(
        self, broker: Any, queues: RedisQueues, queue: str, prefetch: int, timeout_ms: int
    ) -> None:
        self.broker = broker
        self.queues = queues
        self.queue = queue
        self.prefetch = prefetch
        self.timeout_ms = timeout_ms
        self.cache: deque[tuple[str, bytes]] = deque()
        self.handed: set[str] = set()
        self.misses = 0

    def __next__(self) -> MessageProxy | None:
        while True:
            if self.cache:
                proxy = self._hand_out()
                if proxy is not None:
                    return proxy
                continue
            room = self.prefetch - len(self.handed)
            if room > 0:
                self.cache.extend(self.queues.take(self.queue, room))
            if not self.cache:
                self.misses, backoff_ms = compute_backoff(self.misses, max_backoff=self.timeout_ms)
                time.sleep(backoff_ms / 1000)
                return None

    def _hand_out(self) -> MessageProxy | None:
        """The first cached message (None: it did not decode and was dead-lettered)."""
        redis_id, data = self.cache[0]
        try:
            message = Message.decode(data)
        except DecodeError as exc:
            self._bury(redis_id, exc)
            self.cache.popleft()
            return None
        self.cache.popleft()
        self.misses = 0
        if message.options.get("redis_message_id") != redis_id:
            message = message.copy(options={"redis_message_id": redis_id})
        self.handed.add(redis_id)
        return MessageProxy(message)

    def cached(self) -> list[MessageProxy]:
        """Hand out every message fetched with the last one (the fetcher buffers them all,
        so nothing fetched waits inside the consumer, where a crash of the fetcher would
        strand it)."""
        out: list[MessageProxy] = []
        while self.cache:
            proxy = self._hand_out()
            if proxy is not None:
                out.append(proxy)
        return out

    def _bury(self, redis_id: str, exc: BaseException) -> None:
        reason = undecodable(exc)
        logger.error(
            "queue %s: message %s does not decode (%s); dead-lettered with its bytes",
            self.queue,
            redis_id,
            reason,
        )
        self.queues.bury(self.queue, redis_id, reason)

    def ack(self, message: MessageProxy) -> None:
        redis_id = message.options["redis_message_id"]
        try:
            self.broker.do_ack(self.queue, redis_id)
        finally:
            self.handed.discard(redis_id)

    def nack(self, message: MessageProxy) -> None:
        redis_id = message.options["redis_message_id"]
        try:
            self.broker.do_nack(self.queue, redis_id)
        finally:
            self.handed.discard(redis_id)

    def requeue(self, messages: Any) -> None:
        ids = [m.options["redis_message_id"] for m in messages]
        if ids:
            self.broker.do_requeue(self.queue, *ids)
        self.handed.difference_update(ids)

    def give_back_cached(self) -> int:
        """Return what was fetched and never handed out to the queue; how many."""
        ids = [redis_id for redis_id, _ in self.cache]
        self.cache.clear()
        if ids:
            self.broker.do_requeue(self.queue, *ids)
        return len(ids)

    def close(self) -> None:
        return None


def _rabbit_consumer_class() -> type[Consumer]:
    import pika
    from dramatiq.brokers.rabbitmq import _RabbitmqConsumer, _RabbitmqMessage

    amqp_errors = (
        AssertionError,
        pika.exceptions.AMQPConnectionError,
        pika.exceptions.AMQPChannelError,
    )

    class RabbitConsumer(_RabbitmqConsumer):
        """dramatiq's RabbitMQ consumer, but a message that does not decode goes to
        ``NAME.XQ`` with its bytes, headers and the reason, and is acked."""

        def __next__(self) -> MessageProxy | None:
            try:
                method, properties, body = next(self.iterator)
                if method is None:
                    return None
            except amqp_errors as exc:
                if getattr(exc, "reply_code", None) == 404:
                    self.broker.queues_pending.add(q_name(self.queue_name))
                raise ConnectionClosed(exc) from None  # type: ignore[no-untyped-call]
            try:
                message = Message.decode(body)
            except DecodeError as exc:
                self._bury(method.delivery_tag, properties, body, exc)
                return None
            self.known_tags.add(method.delivery_tag)
            proxy: MessageProxy = _RabbitmqMessage(  # type: ignore[no-untyped-call]
                method.redelivered, method.delivery_tag, message
            )
            return proxy

        def _bury(self, tag: int, properties: Any, body: bytes, exc: BaseException) -> None:
            reason = undecodable(exc)
            logger.error(
                "queue %s: a message does not decode (%s); dead-lettered with its bytes",
                self.queue_name,
                reason,
            )
            headers = dict(properties.headers or {})
            headers[REASON_HEADER] = reason
            try:
                self.channel.basic_publish(
                    "",
                    xq_name(q_name(self.queue_name)),
                    body,
                    pika.BasicProperties(
                        delivery_mode=2,
                        headers=headers,
                        content_type=properties.content_type,
                        message_id=properties.message_id,
                    ),
                )
                self.channel.basic_ack(tag)
            except amqp_errors as err:  # unacked: it comes back, and is buried then
                raise ConnectionClosed(err) from None  # type: ignore[no-untyped-call]

    return RabbitConsumer


_rabbit: list[type[Consumer]] = []


def open_consumer(
    broker: dramatiq.Broker, queues: RedisQueues | None, queue: str, prefetch: int, timeout_ms: int
) -> Consumer:
    """The consumer of ``queue`` for ``broker`` (see the module docstring); ``queues``:
    the pool's :class:`RedisQueues` on Redis, else None. ``prefetch`` 0 is unbounded on
    RabbitMQ."""
    kind = broker_kind(broker)
    if kind == "redis" and queues is not None:
        return RedisConsumer(broker, queues, queue, prefetch, timeout_ms)
    if kind == "rabbitmq":
        if not _rabbit:
            _rabbit.append(_rabbit_consumer_class())
        broker.declare_queue(queue, ensure=True)  # type: ignore[call-arg]
        return _rabbit[0](broker, queue, prefetch, timeout_ms)  # type: ignore[call-arg]
    return broker.consume(queue, prefetch=prefetch, timeout=timeout_ms)
