"""RabbitMQ broker (pika's asyncio adapter on the system's event loop).

- publish: persistent messages, publisher confirms pipelined (a batch is sent
  at once and its confirms awaited together), ``mandatory`` so an unroutable
  message comes back and fails its publish;
- topology: :class:`~troupe.brokers.rabbitmq.Topology` declared on
  connect; a stream's queue (and its DLQ ``<stream>:dlq``) is declared on first
  use; a conflicting redeclaration is a ConfigError naming the argument;
- delay: per-stream delay tier queues with a per-message TTL that dead-letter
  into the stream's route (:mod:`troupe.brokers.rabbitmq.publish`);
- consuming: :class:`~troupe.brokers.rabbitmq.session.RabbitSession`, a channel
  per consumer with prefetch = the bridge's window.

One connection per broker object; a lost connection or channel fails every
waiter with :class:`BrokerConnectionError`, the bridges fail and their
supervisors restart them, and the next call reconnects.
"""

from __future__ import annotations

import asyncio
import logging
import os
import ssl
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import pika

from troupe.backoff import Backoff
from troupe.errors import ConfigError

from ..attempts import journal_directory
from ..base import DEFAULT_RECONNECT, Broker, BrokerError, Capabilities
from ..log_limit import limit_client_logs
from ..message import JSON, Message, Serializer
from ..options import check_maxlen, check_port
from ..session import ConsumerSession
from ..tail import Tail
from .connection import AmqpChannel, AmqpConnection, ChannelClosed, Confirms
from .publish import (
    delay_queue,
    delay_tier,
    delayed_properties,
    from_amqp,
    to_properties,
)
from .topology import Queue, Topology, declaration_error

logger = logging.getLogger(__name__)


class RabbitBroker(Broker):
    """A :class:`Broker` on RabbitMQ (3.8+); ``amqps://`` uses TLS, the URL path is the vhost.

    ``topology`` declares exchanges, queues and bindings and routes streams
    (default: each stream is a quorum queue fed by the default exchange).
    ``ssl_context`` replaces the default TLS context of ``amqps://`` (a private CA,
    client certificates). ``maxlen`` caps every work queue (``x-max-length``; the oldest
    are dropped, to the DLQ). ``heartbeat`` (seconds) notices a dead broker on an idle
    connection.
    """

    capabilities = Capabilities(
        "rabbitmq",
        ordering="stream",
        durable=True,
        shared=True,
        requeue_on_close=True,
        raw_entries=False,
    )

    def __init__(
        self,
        url: str,
        *,
        topology: Topology | None = None,
        maxlen: int | None = None,
        heartbeat: int = 30,
        ssl_context: ssl.SSLContext | None = None,
        serializer: Serializer = JSON,
        reconnect: Backoff = DEFAULT_RECONNECT,
        journal_dir: str | os.PathLike[str] | None = None,
    ) -> None:
        super().__init__(url, serializer=serializer, reconnect=reconnect, journal_dir=journal_dir)
        check_port(url)
        check_maxlen(maxlen)
        limit_client_logs("pika")  # its reconnect noise during an outage, thinned
        try:
            self._parameters = pika.URLParameters(url)
        except Exception as exc:
            raise ConfigError("broker url", f"{self.url!r} is not an AMQP URL: {exc}") from exc
        self._parameters.heartbeat = heartbeat
        if ssl_context is not None:  # amqps:// with a private CA or client certificates
            self._parameters.ssl_options = pika.SSLOptions(ssl_context, self._parameters.host)
        self._parameters.connection_attempts = 1
        self._parameters.socket_timeout = 5.0
        self._parameters.blocked_connection_timeout = 60.0
        self.topology = topology or Topology()
        self.maxlen = maxlen
        self._connection: AmqpConnection | None = None
        self._connecting: asyncio.Lock | None = None
        self._topology_channel: AmqpChannel | None = None
        self._confirms: Confirms | None = None
        self._declared: set[str] = set()
        self._queues: dict[str, Queue] = {}  # set by declare_as, ahead of the topology
        self._sessions: dict[tuple[str, str, str], Any] = {}

    # -- connection -----------------------------------------------------------------------

    async def connect(self) -> None:
        connection = self._connection
        if connection is not None and connection.is_open and self._confirms is not None:
            return
        if self._connecting is None:
            self._connecting = asyncio.Lock()
        async with self._connecting:
            connection = self._connection
            if connection is not None and connection.is_open and self._confirms is not None:
                return
            await self._drop()
            connection = AmqpConnection(self._parameters, self.url)
            await connection.open()
            self._connection = connection
            try:
                self._topology_channel = await connection.channel()
                publish = await connection.channel()
                confirms = Confirms(publish)
                await confirms.start()
                self._confirms = confirms
                await self._declare_topology()
            except BaseException:
                await self._drop()
                raise

    async def _drop(self) -> None:
        connection, self._connection = self._connection, None
        self._confirms = None
        self._topology_channel = None
        self._declared.clear()
        if connection is not None:
            await connection.close()

    async def close(self) -> None:
        for session in list(self._sessions.values()):
            await session.close()
        await self._drop()

    async def _channel(self) -> AmqpChannel:
        """The channel for declarations (reopened after a broker closed it)."""
        await self.connect()
        channel = self._topology_channel
        if channel is None or not channel.is_open:
            assert self._connection is not None
            channel = self._topology_channel = await self._connection.channel()
        return channel

    async def _declare(self, what: str, name: str, method: str, **kwargs: Any) -> Any:
        channel = await self._channel()
        try:
            return await channel.call(method, **kwargs)
        except ChannelClosed as exc:
            config = declaration_error(what, name, exc.code, exc.text)
            if config is not None:
                raise config from exc
            raise BrokerError(f"declaring {what} {name!r} on {self.url} failed: {exc}") from exc

    async def _declare_topology(self) -> None:
        t = self.topology
        for exchange in t.exchanges:
            await self._declare(
                "exchange",
                exchange.name,
                "exchange_declare",
                exchange=exchange.name,
                exchange_type=exchange.type,
                durable=True,
                arguments=dict(exchange.arguments) or None,
            )
        for queue in t.queues:
            await self._declare_queue(queue.name)
        for binding in t.bindings:
            await self._declare(
                "binding",
                f"{binding.exchange}->{binding.queue}",
                "queue_bind",
                queue=binding.queue,
                exchange=binding.exchange,
                routing_key=binding.routing_key,
                arguments=dict(binding.arguments) or None,
            )

    async def _declare_queue(self, name: str) -> None:
        """Declare the work queue ``name`` and its DLQ (once per connection)."""
        if name in self._declared:
            return
        dlq = self.dlq(name)
        await self._declare(
            "queue", dlq, "queue_declare", queue=dlq, durable=True,
            arguments={"x-queue-type": "classic"},
        )  # fmt: skip
        queue = self._queues.get(name) or self.topology.queue(name)
        await self._declare(
            "queue",
            name,
            "queue_declare",
            queue=name,
            durable=True,
            arguments=self.topology.queue_arguments(queue, dlq, self.maxlen),
        )
        self._declared.add(name)

    async def _declare_delay(self, stream: str, tier: int) -> str:
        name = delay_queue(stream, tier)
        if name in self._declared:
            return name
        route = self.topology.route(stream)
        args: dict[str, Any] = {"x-queue-type": "classic", "x-dead-letter-exchange": route.exchange}
        args["x-dead-letter-routing-key"] = route.routing_key or stream
        await self._declare(
            "queue", name, "queue_declare", queue=name, durable=True, arguments=args
        )
        self._declared.add(name)
        return name

    def declare_as(self, queue: Queue) -> None:
        """Declare the work queue ``queue.name`` with these settings when it is first used
        (publish or consume), ahead of the topology's; e.g. ``x-single-active-consumer``.

        Raises ConfigError when the name already has other settings here.
        """
        known = self._queues.get(queue.name)
        if known is not None and known != queue:
            raise ConfigError(
                f"queue {queue.name!r}", f"already declared as {known!r}, not {queue!r}"
            )
        self._queues[queue.name] = queue

    async def ensure_group(self, stream: str, group: str) -> None:
        await self.connect()
        await self._declare_queue(stream)

    # -- producing ------------------------------------------------------------------------

    async def _publish(
        self, exchange: str, routing_key: str, items: list[tuple[bytes, Any]]
    ) -> None:
        confirms = self._confirms
        if confirms is None or not confirms.channel.is_open:
            await self._drop_confirms()
            await self.connect()
            confirms = self._confirms
        assert confirms is not None
        await confirms.publish(exchange, routing_key, items)

    async def _drop_confirms(self) -> None:
        self._confirms = None
        connection = self._connection
        if connection is not None and connection.is_open:
            channel = await connection.channel()
            confirms = Confirms(channel)
            await confirms.start()
            self._confirms = confirms

    async def _append(self, stream: str, messages: Sequence[Message]) -> list[str]:
        await self.connect()
        route = self.topology.route(stream)
        if not route.exchange:
            await self._declare_queue(stream)
        if route.routing_key is None:  # routed by message key
            groups: dict[str, list[tuple[bytes, Any]]] = {}
            for m in messages:
                groups.setdefault(m.key or "", []).append((m.body, to_properties(m)))
            await asyncio.gather(*(self._publish(route.exchange, k, g) for k, g in groups.items()))
        else:
            items = [(m.body, to_properties(m)) for m in messages]
            await self._publish(route.exchange, route.routing_key, items)
        return [m.id for m in messages]

    async def _schedule(self, stream: str, messages: Sequence[Message], due: float) -> None:
        await self.connect()
        if not self.topology.route(stream).exchange:
            await self._declare_queue(stream)
        by_queue: dict[str, list[tuple[bytes, Any]]] = {}
        for message in messages:
            properties, delay = delayed_properties(message, due)
            queue = await self._declare_delay(stream, delay_tier(delay))
            by_queue.setdefault(queue, []).append((message.body, properties))
        await asyncio.gather(*(self._publish("", q, items) for q, items in by_queue.items()))

    async def promote_due(self, stream: str) -> int:
        return 0  # RabbitMQ moves due messages itself (TTL + dead-lettering)

    async def publish_raw(
        self,
        stream: str,
        body: bytes,
        headers: Mapping[str, Any] | None = None,
        *,
        content_type: str | None = None,
        **properties: Any,
    ) -> None:
        """Publish plain AMQP (no troupe headers), as another producer would; confirmed."""
        await self.connect()
        route = self.topology.route(stream)
        if not route.exchange:
            await self._declare_queue(stream)
        props = pika.BasicProperties(
            content_type=content_type, headers=dict(headers or {}), delivery_mode=2, **properties
        )
        await self._publish(route.exchange, route.routing_key or stream, [(body, props)])

    async def publish_dead(self, stream: str, message: Message) -> None:
        """Publish a DLQ copy of a message consumed from ``stream`` (confirmed)."""
        await self._declare_queue(stream)
        await self._publish("", self.dlq(stream), [(message.body, to_properties(message))])

    # -- consuming ------------------------------------------------------------------------

    async def consume(
        self,
        stream: str,
        group: str,
        consumer: str,
        *,
        window: int,
        claim_idle: float = 30.0,
        delay_poll: float = 0.05,
    ) -> ConsumerSession:
        from .session import RabbitSession

        await self.connect()
        await self._declare_queue(stream)
        key = (stream, group, consumer)
        previous = self._sessions.pop(key, None)
        if previous is not None:  # the same consumer again: its old deliveries come back
            await previous.close()
        assert self._connection is not None
        channel = await self._connection.channel()
        directory = journal_directory(self.journal_dir, "rabbitmq", self.url, stream, group)
        session = RabbitSession(self, channel, stream, group, consumer, window, Path(directory))
        try:
            await session.start()
        except BaseException:
            session.attempts.close()
            await session.close()
            raise
        self._sessions[key] = session
        return session

    def _session_closed(self, session: Any) -> None:
        key = (session.stream, session.group, session.consumer)
        if self._sessions.get(key) is session:
            del self._sessions[key]

    async def broadcast(self, topic: str, messages: Sequence[Message]) -> None:
        from .tail import broadcast

        await broadcast(self, topic, messages)

    async def tail(self, topic: str) -> Tail:
        from .tail import RabbitTail

        return await RabbitTail.open(self, topic)

    async def read_stream(self, stream: str, count: int = 1000) -> list[Message]:
        """The ready messages of a queue, oldest first, left in place (a channel that reads
        them without acking, then closes)."""
        ready = await self._ready_count(stream, f"reading {stream!r}")
        want = min(count, ready)
        if want == 0:
            return []
        assert self._connection is not None
        reader = await self._connection.channel()
        got: list[Message] = []
        done = asyncio.get_running_loop().create_future()

        def on_message(_: Any, method: Any, properties: Any, body: bytes) -> None:
            got.append(from_amqp(method, properties, body)[0])
            if len(got) >= want and not done.done():
                done.set_result(None)

        try:
            await reader.call("basic_qos", prefetch_count=min(want, 65535))
            reader.check().basic_consume(stream, on_message, auto_ack=False)
            async with asyncio.timeout(10.0):
                await done
        finally:
            await reader.close()
        return got[:want]

    async def pending(self, stream: str, group: str) -> int:
        """Messages in the queue not yet acked: ready ones plus those held unacked by this
        broker object's sessions (AMQP does not tell other connections' unacked count)."""
        ready = await self.lag(stream, group) or 0
        held: int = sum(s.held for k, s in self._sessions.items() if k[0] == stream)
        return ready + held

    async def lag(self, stream: str, group: str) -> int | None:
        """Messages ready in the queue (not delivered to any consumer)."""
        return await self._ready_count(stream, f"queue {stream!r}")

    async def _ready_count(self, stream: str, what: str) -> int:
        """Messages ready in ``stream`` (0 when it does not exist), asked on a channel of
        its own: a passive declare of a missing queue closes its channel, and the shared
        declaration channel may be in use by a publish declaring that queue meanwhile."""
        await self.connect()
        assert self._connection is not None
        channel = await self._connection.channel()
        try:
            ok = await channel.call("queue_declare", queue=stream, passive=True)
        except ChannelClosed as exc:
            if exc.code == 404:
                return 0
            raise BrokerError(f"{what} on {self.url}: {exc}") from exc
        finally:
            if channel.is_open:
                await channel.close()
        return int(ok.method.message_count)


__all__ = ["RabbitBroker"]
