"""Which task queues a deployment has, and talking to RabbitMQ without its management API.

AMQP cannot list queues, and Redis drops an empty queue's keys, so clients and
pools record the queues they declare (:func:`register_queues`): in a Redis set
(``NS:__troupe_queues__``), in a durable RabbitMQ queue ``troupe.tasks.queues``
holding one message per name (duplicates are folded when it is read).
:func:`known_queues` returns them, with (on Redis) every queue that has
messages, whoever put them there. :class:`RabbitSession` counts a queue's ready
messages with a passive ``queue.declare`` and reads messages without taking
them (got unacked, then returned when the session closes).
"""

from __future__ import annotations

import logging
import threading
import weakref
from typing import Any

import dramatiq

from .transport import broker_kind, canonical, connection_errors

logger = logging.getLogger(__name__)

#: The RabbitMQ queue whose messages name the deployment's task queues.
RABBIT_CATALOG = "troupe.tasks.queues"
REDIS_CATALOG = "__troupe_queues__"

_registered: weakref.WeakKeyDictionary[Any, set[str]] = weakref.WeakKeyDictionary()
_registered_lock = threading.Lock()


class RabbitSession:
    """One connection to a RabbitMQ broker's server for inspecting queues (a context
    manager). Unacked messages go back to their queue when it closes."""

    def __init__(self, broker: dramatiq.Broker) -> None:
        import pika

        self.connection = pika.BlockingConnection(broker.parameters)  # type: ignore[attr-defined]
        self._channel: Any = None

    def __enter__(self) -> RabbitSession:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Close the connection (unacked messages are returned)."""
        if self.connection.is_open:
            self.connection.close()

    @property
    def channel(self) -> Any:
        """An open channel (a new one after the server closed the last)."""
        if self._channel is None or not self._channel.is_open:
            self._channel = self.connection.channel()
        return self._channel

    def count(self, queue: str) -> int | None:
        """Ready messages of ``queue`` (passive declare); None when it does not exist."""
        import pika

        try:
            frame = self.channel.queue_declare(queue, passive=True)
        except pika.exceptions.ChannelClosedByBroker as exc:
            if exc.reply_code == 404:
                return None
            raise
        return int(frame.method.message_count)

    def bodies(self, queue: str) -> list[tuple[int, bytes]]:
        """(delivery tag, body) of every ready message of ``queue``, left unacked on one
        channel (see :meth:`ack`); [] when the queue does not exist."""
        return [(tag, body) for tag, body, _ in self.messages(queue)]

    def messages(self, queue: str) -> list[tuple[int, bytes, dict[str, Any]]]:
        """As :meth:`bodies`, with each message's AMQP headers."""
        if self.count(queue) is None:
            return []
        channel = self.channel
        got: list[tuple[int, bytes, dict[str, Any]]] = []
        while True:
            method, props, body = channel.basic_get(queue, auto_ack=False)
            if method is None:
                return got
            got.append((method.delivery_tag, body, dict(props.headers or {})))

    def ack(self, tag: int) -> None:
        """Remove a message :meth:`bodies` got (on the same channel)."""
        self.channel.basic_ack(tag)


def register_queues(broker: dramatiq.Broker, queues: list[str] | set[str]) -> None:
    """Record ``queues`` in the broker's catalog (once per broker object and queue)."""
    with _registered_lock:
        seen = _registered.setdefault(broker, set())
        new = sorted({canonical(q) for q in queues} - seen)
        seen.update(new)
    if not new:
        return
    kind = broker_kind(broker)
    try:
        if kind == "redis":
            ns = getattr(broker, "namespace", "dramatiq")
            broker.client.sadd(f"{ns}:{REDIS_CATALOG}", *new)  # type: ignore[attr-defined]
        elif kind == "rabbitmq":
            import pika

            with RabbitSession(broker) as session:
                channel = session.channel
                channel.queue_declare(RABBIT_CATALOG, durable=True)
                for name in new:
                    properties = pika.BasicProperties(delivery_mode=2)
                    channel.basic_publish("", RABBIT_CATALOG, name.encode(), properties)
    except Exception:
        with _registered_lock:
            seen.difference_update(new)  # try again next time
        raise


def known_queues(broker: dramatiq.Broker) -> set[str]:
    """The queues of the deployment (see the module docstring)."""
    names = {canonical(q) for q in broker.get_declared_queues()}
    kind = broker_kind(broker)
    if kind == "redis":
        ns = str(getattr(broker, "namespace", "dramatiq"))
        client = broker.client  # type: ignore[attr-defined]
        names.update(m.decode() for m in client.smembers(f"{ns}:{REDIS_CATALOG}"))
        for key in client.scan_iter(match=f"{ns}:*", count=1000):
            name = key.decode()[len(ns) + 1 :]
            if not name.startswith("__"):
                names.add(canonical(name.removesuffix(".msgs")))
    elif kind == "rabbitmq":
        with RabbitSession(broker) as session:
            seen: set[str] = set()
            for tag, body in session.bodies(RABBIT_CATALOG):
                name = body.decode(errors="replace")
                if name in seen:
                    session.ack(tag)  # a duplicate: fold it (one copy stays)
                seen.add(name)
            names.update(seen)
    return names


def broker_errors() -> tuple[type[BaseException], ...]:
    """The exceptions that mean "cannot reach (or log in to) the broker": dramatiq's,
    redis-py's connection errors, pika's AMQP errors, socket errors."""
    errors = [*list(connection_errors()), OSError]
    try:
        import pika.exceptions

        errors.append(pika.exceptions.AMQPError)
    except ImportError:  # the rabbitmq extra is not installed
        pass
    return tuple(errors)
