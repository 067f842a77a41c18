"""A consumer of a RabbitMQ queue: the transport under ``ConsumerBridge``.

Each session has its own channel: ``basic.qos`` prefetch = ``window`` (the
target's mailbox capacity, or the bridge's ``prefetch``), ``basic.consume``
with manual acks; deliveries pushed by the broker wait in a buffer that
``fetch`` drains (at most ``limit``). ``ack`` is ``basic.ack`` (one
``multiple`` ack when the handled tags are the oldest held ones);
``dead_letter`` publishes the DLQ copy on the broker's confirm channel, waits
for the confirm, then acks; ``renew`` keeps deliveries of the still open
channel; ``release`` is ``basic.nack(requeue=True)``; ``close`` closes the
channel, and RabbitMQ gives every unacked delivery back to the queue.

Attempts: RabbitMQ's own count (quorum ``x-delivery-count``) grows with every
delivery, not with every handler start, so handler starts are journaled as on
Redis (:mod:`troupe.brokers.attempts`) and folded into an :class:`AttemptsRecord`
— a small SQLite file next to the journals, keyed by message id — because a
RabbitMQ user has no Redis, and a record inside RabbitMQ (a queue) cannot be
updated in place. Like the journals it is host-local; the broker count is the
backstop across hosts. Only redelivered messages are looked up, so the hot
path costs nothing; a row goes with the ack or the DLQ move, and rows not
touched for ``RETENTION`` seconds (a message settled on another host) are
dropped when a session opens.

The backstop must not fire in a crash loop: a closing channel (a consumer
killed, or closed with deliveries unsettled) raises the count of *every*
message it held — the whole prefetch window, most of it never started, some of
it still unread in the socket. So the record also keeps the *ends* of this
host's sessions (table ``ends``): every dead journal folded, and every session
whose channel closed holding deliveries (once per journal incarnation, with
the time); :func:`~troupe.brokers.attempts.account` turns them into
``Delivery.accounted`` and the backstop counts only the rest: deliveries to
other hosts. (A host that crash-loops while another one lost a message's starts
weakens the backstop for that message; it never dead-letters a message for
this host's crashes.)
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import sqlite3
import time
from collections import deque
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..attempts import ENDS_KEPT, JournaledAttempts, Start, account
from ..base import BrokerError
from ..message import Message
from ..session import ConsumerSession, Delivery
from .connection import AmqpChannel, settle
from .publish import from_amqp

if TYPE_CHECKING:
    from .broker import RabbitBroker

logger = logging.getLogger(__name__)

RETENTION = 7 * 24 * 3600.0  # seconds an attempts row may go untouched
MARKER_RETENTION = 3600.0
FIRST_PUSH = 2.0  # the first fetch waits up to this long for what the queue held at consume
RETURN_WAIT = 0.5  # a closing session waits up to this long for its deliveries to be ready again
LINGER = 0.002  # a partial page waits this long for more pushed deliveries


class AttemptsRecord:
    """Durable handler-start counts for one queue on this host (SQLite, WAL)."""

    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        self._db = sqlite3.connect(path, timeout=10.0, isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=NORMAL")
        self._db.execute(
            "CREATE TABLE IF NOT EXISTS attempts (entry TEXT PRIMARY KEY, n INTEGER, at REAL)"
        )
        self._db.execute("CREATE TABLE IF NOT EXISTS markers (marker TEXT PRIMARY KEY, at REAL)")
        self._db.execute("CREATE TABLE IF NOT EXISTS ends (incarnation TEXT PRIMARY KEY, at REAL)")

    def prune(self) -> None:
        """Drop rows untouched for RETENTION seconds and old markers."""
        now = time.time()
        with self._tx():
            self._db.execute("DELETE FROM attempts WHERE at < ?", (now - RETENTION,))
            self._db.execute("DELETE FROM ends WHERE at < ?", (now - ENDS_KEPT,))
            self._db.execute("DELETE FROM markers WHERE at < ?", (now - MARKER_RETENTION,))

    @contextlib.contextmanager
    def _tx(self) -> Any:
        self._db.execute("BEGIN IMMEDIATE")
        try:
            yield
        except BaseException:
            self._db.execute("ROLLBACK")
            raise
        self._db.execute("COMMIT")

    async def add(self, starts: Sequence[Start], done: Sequence[str]) -> int:
        """Add starts, each at most once per marker; forget the ``done`` markers."""
        now = time.time()
        added = 0
        with self._tx():
            db = self._db
            db.executemany("DELETE FROM markers WHERE marker = ?", [(m,) for m in done])
            for key, count, marker in starts:
                if marker:
                    cur = db.execute(
                        "INSERT OR IGNORE INTO markers (marker, at) VALUES (?, ?)", (marker, now)
                    )
                    if cur.rowcount == 0:
                        continue
                db.execute(
                    "INSERT INTO attempts (entry, n, at) VALUES (?, ?, ?) "
                    "ON CONFLICT(entry) DO UPDATE SET n = n + excluded.n, at = excluded.at",
                    (key, count, now),
                )
                added += 1
        return added

    def get(self, keys: Sequence[str]) -> dict[str, int]:
        """The recorded starts of ``keys`` (absent: none)."""
        if not keys:
            return {}
        marks = ",".join("?" * len(keys))
        rows = self._db.execute(
            f"SELECT entry, n FROM attempts WHERE entry IN ({marks})",
            list(keys),
        ).fetchall()
        return {str(k): int(n) for k, n in rows}

    def end(self, incarnation: str) -> None:
        """A session of this host ended holding deliveries (its journal's incarnation)."""
        self._db.execute(
            "INSERT OR IGNORE INTO ends (incarnation, at) VALUES (?, ?)",
            (incarnation, time.time()),
        )

    async def ended(self, incarnation: str) -> None:
        """:meth:`end`, for the folder of a dead journal."""
        self.end(incarnation)

    def ends(self) -> list[float]:
        """When this host's sessions ended holding deliveries, oldest first."""
        return [float(at) for (at,) in self._db.execute("SELECT at FROM ends ORDER BY at")]

    def forget(self, keys: Sequence[str]) -> None:
        """Drop the rows of settled messages."""
        if keys:
            self._db.executemany("DELETE FROM attempts WHERE entry = ?", [(k,) for k in keys])

    def close(self) -> None:
        self._db.close()


class RabbitSession(ConsumerSession):
    """One consumer of a RabbitMQ queue (see the module docstring)."""

    def __init__(
        self,
        broker: RabbitBroker,
        channel: AmqpChannel,
        stream: str,
        group: str,
        consumer: str,
        window: int,
        directory: Path,
    ) -> None:
        super().__init__(stream, group, consumer, window)
        self._broker = broker
        self._channel = channel
        self._buffer: deque[tuple[Any, Any, bytes]] = deque()
        self._arrived = asyncio.Event()
        self._held: dict[int, Delivery] = {}  # delivery tag -> unsettled delivery
        self._ids: dict[str, int] = {}  # message id -> tag of the held delivery
        self._consumer_tag: str | None = None
        self._started = False
        self._expect = 0  # deliveries the first push brings (ready at consume, up to window)
        self._last_fold = 0.0
        self.record = AttemptsRecord(directory / "attempts.sqlite")
        self.attempts = self._journal = JournaledAttempts(
            directory, consumer, self.record.add, window, ended=self.record.ended
        )
        channel.on_close.append(self._channel_closed)

    async def start(self) -> None:
        """qos and consume; fold dead consumers' journals first."""
        with contextlib.suppress(sqlite3.Error):
            self.record.prune()
        await self.attempts.fold_dead()
        self._last_fold = time.monotonic()
        ready = await self._channel.call("queue_declare", queue=self.stream, passive=True)
        self._expect = min(self.window, int(ready.method.message_count))
        await self._channel.call("basic_qos", prefetch_count=min(self.window, 65535))
        ch = self._channel.check()
        future = self._channel.future()
        self._consumer_tag = ch.basic_consume(
            self.stream,
            self._on_message,
            auto_ack=False,
            consumer_tag=f"{self.consumer}-{id(self):x}",
            callback=lambda frame: settle(future, frame),
        )
        await future

    def _channel_closed(self, _: BaseException) -> None:
        """RabbitMQ gave back what this channel held: none of it is this session's now."""
        if self._held or self._buffer:  # their counts went up: this end accounts for it
            with contextlib.suppress(sqlite3.Error):
                self.record.end(self._journal.journal.incarnation)
        self._buffer.clear()
        self._held.clear()
        self._ids.clear()
        self._arrived.set()  # a waiting fetch raises the channel's error

    def _on_message(self, _: Any, method: Any, properties: Any, body: bytes) -> None:
        self._buffer.append((method, properties, body))
        self._arrived.set()

    @property
    def held(self) -> int:
        """Deliveries taken from the broker and not settled."""
        return len(self._held) + len(self._buffer)

    # -- intake ---------------------------------------------------------------------------

    async def fetch(self, limit: int, timeout: float) -> list[Delivery]:
        buffer = self._buffer
        if not self._started:
            self._started = True
            await self._first_push(limit)
        if not buffer:
            self._channel.check()
            wait = timeout
            if wait > 0:
                self._arrived.clear()
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(wait):
                        await self._arrived.wait()
            self._channel.check()
        if buffer and len(buffer) < limit:
            await asyncio.sleep(LINGER)  # the rest of a pushed burst
        out: list[Delivery] = []
        recorded: list[Delivery] = []
        stream, group, held, ids = self.stream, self.group, self._held, self._ids
        while buffer and len(out) < limit:
            method, properties, body = buffer.popleft()
            message, count = from_amqp(method, properties, body)
            tag = method.delivery_tag
            if message.id in ids:  # a duplicate publish (a retry after a lost confirm)
                logger.debug("%s: duplicate of held message %s acked", stream, message.id)
                self._channel.check().basic_ack(tag)
                continue
            delivery = Delivery(stream, group, message.id, message, count, token=tag)
            held[tag] = delivery
            ids[message.id] = tag
            out.append(delivery)
            if count > 1:
                recorded.append(delivery)
        if recorded:
            await self._recorded_attempts(recorded)
        return out

    async def _first_push(self, limit: int) -> None:
        """Right after consume, wait for what the queue held then (up to ``FIRST_PUSH`` s)."""
        want = min(limit, self._expect)
        deadline = time.monotonic() + FIRST_PUSH
        while len(self._buffer) < want and time.monotonic() < deadline:
            self._channel.check()
            self._arrived.clear()
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(max(0.0, deadline - time.monotonic())):
                    await self._arrived.wait()

    async def _recorded_attempts(self, deliveries: list[Delivery]) -> None:
        now = time.monotonic()
        if now - self._last_fold > 0.2:  # the redelivery may come from a consumer that died
            self._last_fold = now
            await self.attempts.fold_dead()
        found = self.record.get([d.entry_id for d in deliveries])
        for delivery in deliveries:
            delivery.attempts = found.get(delivery.entry_id, 0)
        account(deliveries, self.record.ends())

    # -- settle ---------------------------------------------------------------------------

    def _take(self, deliveries: Sequence[Delivery]) -> list[int]:
        tags: list[int] = []
        for delivery in deliveries:
            tag = delivery.token
            if self._held.pop(tag, None) is not None:
                self._ids.pop(delivery.entry_id, None)
                tags.append(tag)
        return tags

    async def ack(self, deliveries: Sequence[Delivery]) -> None:
        if not deliveries:
            return
        ch = self._channel.check()
        tags = self._take(deliveries)
        if not tags:
            return
        top = max(tags)
        # held in fetch order, which is tag order on the channel: the first is the lowest
        if not self._held or next(iter(self._held)) > top:
            ch.basic_ack(top, multiple=True)  # every held tag up to ``top`` is in this ack
        else:
            for tag in tags:
                ch.basic_ack(tag)
        self.record.forget([d.entry_id for d in deliveries if d.recorded])

    async def dead_letter(self, delivery: Delivery, message: Message) -> None:
        self._channel.check()
        await self._broker.publish_dead(self.stream, message)
        for tag in self._take([delivery]):
            self._channel.check().basic_ack(tag)
        self.record.forget([delivery.entry_id])

    async def renew(self, deliveries: Sequence[Delivery]) -> list[Delivery]:
        if not self._channel.is_open:
            return []
        return [d for d in deliveries if d.token in self._held]

    async def release(self, deliveries: Sequence[Delivery]) -> None:
        if not self._channel.is_open:
            return
        ch = self._channel.check()
        for tag in self._take(deliveries):
            ch.basic_nack(tag, requeue=True)

    async def lag(self) -> int | None:
        return await self._broker.lag(self.stream, self.group)

    async def close(self) -> None:
        self._broker._session_closed(self)
        held = self.held if self._channel.is_open else 0
        ready = await self._ready() if held else None
        self._buffer.clear()
        self._held.clear()
        self._ids.clear()
        try:
            if held:  # their counts go up: this end accounts for it
                with contextlib.suppress(sqlite3.Error):
                    self.record.end(self._journal.journal.incarnation)
            await self._channel.close()  # RabbitMQ requeues what was not acked
            if ready is not None:  # so that a consumer opened next sees them at once
                deadline = time.monotonic() + RETURN_WAIT
                while time.monotonic() < deadline and (await self._ready() or 0) < ready + held:  # noqa: ASYNC110 - polling the broker
                    await asyncio.sleep(0.01)
        finally:
            self.record.close()

    async def _ready(self) -> int | None:
        try:
            return await self._broker.lag(self.stream, self.group)
        except BrokerError:
            return None


__all__ = ["AttemptsRecord", "RabbitSession"]
