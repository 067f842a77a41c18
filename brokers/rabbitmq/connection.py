"""pika on the system's event loop: an AMQP connection and channels as awaitables.

pika's :class:`~pika.adapters.asyncio_connection.AsyncioConnection` runs its
I/O as callbacks on the running asyncio loop, so a bridge talks to RabbitMQ
without a thread hop per message (a thread per connection with
``BlockingConnection`` costs a cross-thread handoff per batch and per confirm;
see the README's RabbitMQ section for the numbers). This module turns pika's
callbacks into futures:

- :class:`AmqpConnection` opens the connection (``await open()``) and channels;
  a lost connection fails every waiter with :class:`BrokerConnectionError`;
- :class:`AmqpChannel` runs synchronous AMQP methods (``await call(...)``); a
  channel the broker closes (e.g. 406 PRECONDITION_FAILED) fails its waiters
  with :class:`ChannelClosed` carrying the reply code and text;
- :class:`Confirms` puts a channel in confirm mode and gives a future per
  batch of publishes, settled by the broker's ``basic.ack`` / ``basic.nack`` (many in
  flight, ``multiple`` acks honoured); a ``mandatory`` publish the broker
  returned (unroutable) fails its future.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from collections.abc import Callable
from typing import Any

import pika
from pika.adapters.asyncio_connection import AsyncioConnection
from pika.channel import Channel
from pika.exceptions import ChannelClosedByBroker, ConnectionClosedByBroker

from ..base import BrokerConnectionError, BrokerError, PublishRefused

logger = logging.getLogger(__name__)


class ChannelClosed(BrokerError):
    """The broker closed a channel (``code`` and ``text`` are its reply)."""

    def __init__(self, code: int, text: str) -> None:
        super().__init__(f"channel closed by the broker: {code} {text}")
        self.code = code
        self.text = text


class Unroutable(PublishRefused):
    """A mandatory publish was returned by the broker: no queue is bound for it."""


class AmqpConnection:
    """One AMQP connection on the running loop; ``url`` (redacted) names it in errors."""

    def __init__(self, parameters: pika.URLParameters, url: str) -> None:
        self.parameters = parameters
        self.url = url
        self._connection: AsyncioConnection | None = None
        self._error: BaseException | None = None
        self._channels: set[AmqpChannel] = set()
        self._closing = False

    @property
    def is_open(self) -> bool:
        c = self._connection
        return c is not None and c.is_open and self._error is None

    async def open(self) -> None:
        """Connect; raises BrokerConnectionError."""
        loop = asyncio.get_running_loop()
        opened: asyncio.Future[None] = loop.create_future()

        def on_open(_: Any) -> None:
            if not opened.done():
                opened.set_result(None)

        def on_error(_: Any, exc: BaseException) -> None:
            if not opened.done():
                opened.set_exception(
                    BrokerConnectionError(f"cannot connect to {self.url}: {_describe(exc)}")
                )

        def on_close(_: Any, reason: BaseException) -> None:
            error = BrokerConnectionError(f"connection to {self.url} lost: {_describe(reason)}")
            self._error = error
            if not opened.done():
                opened.set_exception(error)
            for channel in list(self._channels):
                channel._fail(error)
            if not self._closing:
                logger.debug("amqp connection to %s closed: %s", self.url, reason)

        self._connection = AsyncioConnection(
            self.parameters,
            on_open_callback=on_open,
            on_open_error_callback=on_error,
            on_close_callback=on_close,
            custom_ioloop=loop,
        )
        try:
            await opened
        except BaseException:
            self._abort()
            raise

    def _abort(self) -> None:
        connection, self._connection = self._connection, None
        if connection is not None and not connection.is_closed and not connection.is_closing:
            try:
                connection.close()
            except Exception as exc:  # already half-closed
                logger.debug("amqp close of %s: %s", self.url, exc)

    async def channel(self) -> AmqpChannel:
        """A new open channel; raises BrokerConnectionError."""
        connection = self._connection
        if connection is None or self._error is not None or not connection.is_open:
            raise self._error or BrokerConnectionError(f"not connected to {self.url}")
        future: asyncio.Future[Channel] = asyncio.get_running_loop().create_future()
        wrapper = AmqpChannel(self)
        self._channels.add(wrapper)
        wrapper._pending.add(future)
        try:
            connection.channel(on_open_callback=lambda ch: settle(future, ch))
        except Exception as exc:
            self._channels.discard(wrapper)
            raise BrokerConnectionError(f"cannot open a channel on {self.url}: {exc}") from exc
        wrapper._attach(await future)
        return wrapper

    async def close(self) -> None:
        """Close the connection (unacked deliveries go back to their queues)."""
        self._closing = True
        connection, self._connection = self._connection, None
        if connection is None or connection.is_closed:
            return
        loop = asyncio.get_running_loop()
        done: asyncio.Future[None] = loop.create_future()
        connection.add_on_close_callback(lambda *_: settle(done, None))
        if not connection.is_closing:
            try:
                connection.close()
            except Exception as exc:
                logger.debug("amqp close of %s: %s", self.url, exc)
                return
        try:
            async with asyncio.timeout(5.0):
                await done
        except TimeoutError:
            logger.warning("amqp connection to %s did not close within 5 s", self.url)


class AmqpChannel:
    """One channel: awaitable methods, failure of every waiter when it closes."""

    def __init__(self, connection: AmqpConnection) -> None:
        self.connection = connection
        self.channel: Channel | None = None
        self.error: BaseException | None = None
        self._pending: set[asyncio.Future[Any]] = set()
        self.on_close: list[Callable[[BaseException], None]] = []

    def _attach(self, channel: Channel) -> None:
        self.channel = channel
        channel.add_on_close_callback(self._closed)

    def _closed(self, _: Any, reason: BaseException) -> None:
        if isinstance(reason, ChannelClosedByBroker):
            error: BaseException = ChannelClosed(reason.reply_code, reason.reply_text)
        elif self.connection._error is not None:
            error = self.connection._error
        else:
            error = BrokerConnectionError(f"channel on {self.connection.url} closed: {reason}")
        self._fail(error)

    def _fail(self, error: BaseException) -> None:
        if self.error is None:
            self.error = error
        self.connection._channels.discard(self)
        pending, self._pending = self._pending, set()
        for future in pending:
            if not future.done():
                future.set_exception(error)
        for hook in self.on_close:
            hook(error)

    @property
    def is_open(self) -> bool:
        ch = self.channel
        return self.error is None and ch is not None and ch.is_open

    def check(self) -> Channel:
        """The pika channel; raises the channel's error when it is closed."""
        if self.error is not None:
            raise self.error
        ch = self.channel
        if ch is None or not ch.is_open:
            raise BrokerConnectionError(f"channel on {self.connection.url} is closed")
        return ch

    def future(self) -> asyncio.Future[Any]:
        """A future that fails when the channel closes."""
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        if self.error is not None:
            future.set_exception(self.error)
            return future
        self._pending.add(future)
        future.add_done_callback(self._pending.discard)
        return future

    async def call(self, method: str, *args: Any, **kwargs: Any) -> Any:
        """Run a synchronous AMQP method (``queue_declare``, ``basic_qos``...); its reply frame."""
        ch = self.check()
        future = self.future()
        getattr(ch, method)(*args, callback=lambda frame: settle(future, frame), **kwargs)
        return await future

    async def close(self) -> None:
        """Close the channel (its unacked deliveries go back to their queues)."""
        ch = self.channel
        if ch is None or not ch.is_open or self.error is not None:
            return
        done = asyncio.get_running_loop().create_future()
        self.on_close.append(lambda _: settle(done, None))
        try:
            ch.close()
        except Exception as exc:
            logger.debug("amqp channel close: %s", exc)
            return
        try:
            async with asyncio.timeout(5.0):
                await done
        except (TimeoutError, BrokerError):
            pass


class _Batch:
    """Publishes confirmed together: one future for the lot."""

    __slots__ = ("future", "ids", "left")

    def __init__(self, future: asyncio.Future[None], ids: list[str | None]) -> None:
        self.future = future
        self.ids = ids  # message ids, to find a returned (unroutable) one
        self.left = len(ids)


class Confirms:
    """Publisher confirms on a channel: one future per batch of publishes, many in flight."""

    def __init__(self, channel: AmqpChannel) -> None:
        self.channel = channel
        self._tag = 0
        self._waiting: dict[int, _Batch] = {}  # delivery tag -> its batch
        self._returned: dict[str, str] = {}

    async def start(self) -> None:
        """Put the channel in confirm mode and listen for returns."""
        ch = self.channel.check()
        ch.add_on_return_callback(self._on_return)
        future = self.channel.future()
        ch.confirm_delivery(self._on_confirm, callback=lambda frame: settle(future, frame))
        await future

    def publish(
        self,
        exchange: str,
        routing_key: str,
        items: list[tuple[bytes, pika.BasicProperties]],
        *,
        mandatory: bool = True,
    ) -> asyncio.Future[None]:
        """Send ``(body, properties)`` items; the future settles when the broker confirmed
        them all, or fails with the first nack or return (unroutable)."""
        ch = self.channel.check()
        batch = _Batch(self.channel.future(), [props.message_id for _, props in items])
        publish, waiting, tag = ch.basic_publish, self._waiting, self._tag
        for body, props in items:
            publish(exchange, routing_key, body, props, mandatory)
            tag += 1
            waiting[tag] = batch
        self._tag = tag
        coalesce_output(ch.connection)
        return batch.future

    def _on_return(self, _: Any, method: Any, properties: Any, body: bytes) -> None:
        if properties.message_id is not None:
            self._returned[properties.message_id] = f"{method.reply_code} {method.reply_text}"

    def _on_confirm(self, frame: Any) -> None:
        method = frame.method
        tag: int = method.delivery_tag
        nack = isinstance(method, pika.spec.Basic.Nack)
        tags = [tag]
        if method.multiple:  # every waiting tag up to ``tag``: the dict is in tag order
            tags = []
            for t in self._waiting:
                if t > tag:
                    break  # (a multiple ack no longer scans the publishes still in flight)
                tags.append(t)
        for t in tags:
            batch = self._waiting.pop(t, None)
            if batch is None:
                continue
            batch.left -= 1
            if nack and not batch.future.done():
                # RabbitMQ nacks what it could not store (a queue leader stopping, say):
                # retried, unlike an unroutable message
                batch.future.set_exception(
                    BrokerError("the broker could not store it (basic.nack)")
                )
            if batch.left == 0:
                self._settle(batch)

    def _settle(self, batch: _Batch) -> None:
        """Every publish of ``batch`` was answered: done, unless one was returned."""
        why = None
        if self._returned:  # (returns of this batch are forgotten in any case)
            for message_id in batch.ids:
                found = self._returned.pop(message_id, None) if message_id is not None else None
                why = why or found
        if batch.future.done():
            return
        if why is not None:
            batch.future.set_exception(Unroutable(f"returned by the broker: {why}"))
        else:
            batch.future.set_result(None)

    @property
    def in_flight(self) -> int:
        """Publishes not yet confirmed."""
        return len(self._waiting)


def coalesce_output(connection: Any) -> bool:
    """Join what ``connection`` has buffered for the socket into one chunk; True if it did.

    pika marshals each AMQP frame on its own (a publish is three: method, header,
    body) and its transport sends every buffered frame with a ``send`` call of its
    own: a batch of 100 publishes costs 300 system calls here and 300 reads on the
    broker. Joined, the batch leaves in one call (about 13 us less CPU per message
    in ``benchmarks/brokers_rabbitmq.py``). This reaches into pika's transport
    (``_transport._tx_buffers``, pika 1.3 and 1.4): the bytes and their order are
    unchanged, and where the attributes are not there it does nothing
    (``tests/brokers/test_rabbitmq.py`` checks that it applies to the pinned pika).
    """
    transport = getattr(connection, "_transport", None)
    buffers = getattr(transport, "_tx_buffers", None)
    if not isinstance(buffers, deque) or len(buffers) < 2:
        return False
    joined = b"".join(buffers)
    buffers.clear()
    buffers.append(joined)
    return True


def settle(future: asyncio.Future[Any], value: Any) -> None:
    """Resolve ``future`` with ``value`` unless it is done (a pika callback)."""
    if not future.done():
        future.set_result(value)


def _describe(exc: BaseException) -> str:
    if isinstance(exc, ConnectionClosedByBroker):
        return f"closed by the broker: {exc.reply_code} {exc.reply_text}"
    found = getattr(exc, "exceptions", None)  # pika's connection workflow: the attempts
    if isinstance(found, tuple) and found and isinstance(found[-1], BaseException):
        return _describe(found[-1])
    wrapped = getattr(exc, "exception", None)  # pika's phase errors wrap the cause
    if isinstance(wrapped, BaseException) and wrapped is not exc:
        return _describe(wrapped)
    inner = exc.args[0] if exc.args else None
    if isinstance(inner, BaseException) and inner is not exc:  # pika wraps the cause
        return _describe(inner)
    if isinstance(inner, tuple | list) and inner and isinstance(inner[0], BaseException):
        return _describe(inner[0])
    text = str(exc) or type(exc).__name__
    return f"{type(exc).__name__}: {text}" if str(exc) else text


__all__ = ["AmqpChannel", "AmqpConnection", "ChannelClosed", "Confirms", "Unroutable", "settle"]
