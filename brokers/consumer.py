"""``ConsumerBridge``: the delivery contract, written once for every broker.

A consumer bridge is an actor that consumes a source (stream / queue / topic)
as one consumer of a group, through the broker's
:class:`~troupe.brokers.session.ConsumerSession`, and delivers each payload to
a target actor (by ref or by name) with :meth:`troupe.ActorRef.deliver`:

- it acks only after the target's handler returned;
- an attempt is counted when the handler *starts* (the session's
  :class:`~troupe.brokers.session.AttemptLog`, durable against kill -9), never
  when a message is fetched or claimed; a handler failure is counted in the
  broker's attempts record, then retried after the shared
  :class:`~troupe.backoff.Backoff` delay; after ``max_deliveries`` started
  attempts the message goes to the DLQ with the reason and its origin in the
  headers — also when every start killed the consumer process;
- a delivery the broker has handed out more than ``max_broker_deliveries``
  times (4 x ``max_deliveries`` by default) goes to the DLQ too: the backstop
  for starts whose journal is on a host that never came back. It counts only
  the earlier deliveries no consumer *end* explains (``Delivery.accounted``: a
  dead journal folded, or a session closed holding deliveries, since the
  message was published; see :func:`troupe.brokers.attempts.account`), so a
  crash loop does not dead-letter messages that never ran;
- a payload that does not decode, or an entry that is not a troupe message,
  goes to the DLQ at once (the entry's original fields are kept byte for byte);
- intake is bounded by the room in the target's mailbox (and ``prefetch``), so
  backpressure reaches the broker as a smaller fetch; each fetched page goes to the
  target in one :meth:`troupe.ActorRef.deliver_page` (one room check, one
  scheduling; still one handler call per message, or one ``receive_batch`` call),
  and at most two pages (``2 x batch``: the next is fetched while one runs) wait
  in the mailbox to start, so a crash strands little: what was fetched or claimed
  but never started is taken again without losing an attempt;
- on stop or restart it drains: stops intake, lets in-flight messages finish
  within ``drain_timeout``, acks what was handled and releases the rest
  unacked;
- a lost connection fails the bridge with one log line naming it, the broker
  (password redacted) and the cause; its supervisor restarts it and the
  restarted bridge waits out the broker's reconnect backoff;
- a setting the broker refuses when the session opens (a :class:`~troupe.ConfigError`,
  e.g. a RabbitMQ queue declared with other arguments) stops the bridge with one
  ERROR line naming the queue and the argument: restarting would not help.

The payload reaches the target as the message; broker metadata is in
``self.headers`` (``troupe-attempt`` — the start number, 1 the first time —
``troupe-message-id``, ``troupe-stream``, ``troupe-entry-id``, ``troupe-key`` (the
message's key, when it has one: a Kafka record's key), ``traceparent``
and the publisher's headers).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
from collections.abc import Awaitable, Callable, Sequence
from typing import TYPE_CHECKING, Any

from troupe import Middleware, SkipMessage
from troupe.actor import Actor
from troupe.backoff import Backoff
from troupe.errors import ConfigError, require_at_least
from troupe.ref import ActorRef

from .base import Broker, BrokerConnectionError, BrokerError, ConsumerStats, dead_message
from .message import (
    ATTEMPT,
    CONTENT_TYPE,
    ENTRY_ID,
    JSON,
    KEY,
    MESSAGE_ID,
    STREAM,
    MalformedMessage,
    Serializer,
    decode_body,
)
from .session import AttemptLog, ConsumerSession, Delivery, OwnershipListener
from .typed_payloads import typed

if TYPE_CHECKING:
    from troupe.clock import TimerHandle

logger = logging.getLogger(__name__)

TARGET_WAIT = 0.1  # seconds between looks for a target actor that is not running
LAG_INTERVAL = 1.0  # seconds between lag readings for stats.lag
LAG_WAIT = 1.0  # seconds a bridge that stops reading waits for a lag reading to end
DEFAULT_RETRY = Backoff(initial=0.1, maximum=5.0, multiplier=2.0, jitter="equal")
_ATTEMPTS = tuple(str(n) for n in range(1, 9))  # troupe-attempt header values, prebuilt


class ConnectionLost:
    """What a bridge fails on when its broker connection is lost (its repr is the log line)."""

    __slots__ = ("bridge", "error", "url")

    def __init__(self, bridge: str, url: str, error: BaseException) -> None:
        self.bridge = bridge
        self.url = url
        self.error = error

    def __repr__(self) -> str:
        return f"lost connection to {self.url}"


class _Failure:
    """A failure of one of the bridge's own tasks, sent to itself to fail the actor."""

    __slots__ = ("error", "task")

    def __init__(self, task: str, error: BaseException) -> None:
        self.task = task
        self.error = error

    def __repr__(self) -> str:
        return f"a failure in its {self.task} task"


class _Page:
    """A page of deliveries handed to the target in one ``deliver_page``; tells the
    bridge when the target starts each one and how it ended (a PageTracker)."""

    __slots__ = ("_bridge", "deliveries", "marks")

    def __init__(self, bridge: ConsumerBridge, deliveries: list[Delivery]) -> None:
        self._bridge = bridge
        self.deliveries = deliveries
        self.marks = bytearray(len(deliveries))  # per delivery: STARTED | DONE bits

    def retry(self, index: int) -> bool:
        """A handler started this message before: its failure is the message's."""
        return self.deliveries[index].attempts > 0

    def started(self, index: int) -> None:
        self.marks[index] |= _STARTED
        bridge = self._bridge  # the bridge's _started, inlined: once per message
        log = bridge._log
        if log is not None:
            log.started(self.deliveries[index])
        bridge.stats.started += 1
        waiting = bridge._waiting = bridge._waiting - 1
        if waiting == bridge.batch:
            bridge._room.set()  # room for the next page

    def finished(self, index: int, error: BaseException | None) -> None:
        marks = self.marks
        mark = marks[index]
        if mark & _DONE:
            return
        marks[index] = mark | _DONE
        bridge = self._bridge
        delivery = self.deliveries[index]
        if error is not None or bridge._closed:
            bridge._finished(delivery, mark & _STARTED, error)
            return
        # handled: acked with the next flush (the common case, once per message); the room
        # it frees is the flush's to announce
        bridge._handling -= 1
        bridge._acks.append(delivery)
        log = bridge._log
        if log is not None and bridge._me.is_alive:  # it returned: a crash of the process
            log.settled_one(delivery)  # before the ack costs it no attempt
        else:  # killed bridges count their starts as a crash would
            bridge._journaled.append(delivery)
        if not bridge._wake_pending:  # one Event.set per flush, not per message
            bridge._wake_pending = True
            bridge._wake.set()


_STARTED, _DONE = 1, 2


class _HookedPage(_Page):
    """A page that also runs the bridge's ``after_deliver`` middleware hooks per message."""

    __slots__ = ("items",)

    def __init__(
        self,
        bridge: ConsumerBridge,
        deliveries: list[Delivery],
        items: list[tuple[Any, dict[str, str]]],
    ) -> None:
        super().__init__(bridge, deliveries)
        self.items = items

    def finished(self, index: int, error: BaseException | None) -> None:
        if not self.marks[index] & _DONE:
            bridge = self._bridge
            payload, headers = self.items[index]
            for hook in bridge.middleware.after_deliver:
                hook(bridge, self.deliveries[index], payload, headers, error)
        super().finished(index, error)


class ConsumerBridge(Actor):
    """Deliver a source's messages to ``target``, at least once, acking after handling.

    >>> from troupe.brokers import ConsumerBridge, connect
    >>> # system.spawn(ConsumerBridge, connect("memory://"), "orders", "billing", "biller")

    ``consumer`` names this consumer in the group; keep it stable across restarts
    of the process to resume its own pending entries at once (others' pending
    entries are taken over after ``claim_idle`` seconds). ``block`` is how long
    one fetch waits for new entries; delayed messages that fell due are moved
    into the stream every ``delay_poll`` seconds. ``ownership`` is told of partition
    assignments and revokes (Kafka; see :class:`~troupe.brokers.session.OwnershipListener`).
    """

    def __init__(
        self,
        broker: Broker,
        stream: str,
        group: str,
        target: ActorRef | str,
        *,
        consumer: str | None = None,
        serializer: Serializer | None = None,
        max_deliveries: int = 5,
        max_broker_deliveries: int | None = None,
        retry: Backoff = DEFAULT_RETRY,
        batch: int = 100,
        prefetch: int | None = None,
        block: float = 0.5,
        claim_idle: float = 30.0,
        drain_timeout: float = 5.0,
        delay_poll: float = 0.05,
        middleware: Sequence[Middleware] = (),
        message_type: type | None = None,
        ownership: OwnershipListener | None = None,
    ) -> None:
        require_at_least("max_deliveries", max_deliveries, 1)
        require_at_least("batch", batch, 1)
        if prefetch is not None:
            require_at_least("prefetch", prefetch, 1)
        if max_broker_deliveries is None:
            max_broker_deliveries = 4 * max_deliveries
        require_at_least("max_broker_deliveries", max_broker_deliveries, max_deliveries)
        self.broker = broker
        self.stream = stream
        self.group = group
        self.target = target
        self.consumer = consumer or f"{socket.gethostname()}-{os.getpid()}-{self.name}"
        self.serializer = serializer or broker.serializer
        #: payloads are decoded into this type (troupe.brokers.typed_payloads); None: the target's
        self.payload_type = message_type
        if message_type is not None:
            self.serializer = typed(message_type)
        self.max_deliveries = max_deliveries
        self.max_broker_deliveries = max_broker_deliveries
        self.retry = retry
        self.batch = batch
        self.prefetch = prefetch
        self.block = block
        self.claim_idle = claim_idle
        self.drain_timeout = drain_timeout
        self.delay_poll = delay_poll
        self.ownership = ownership
        self.stats: ConsumerStats = broker.stats.consumer(stream, group, self.consumer)
        self._session: ConsumerSession | None = None
        self._log: AttemptLog | None = None
        self._in_flight: dict[str, Delivery] = {}  # fetched, neither settled nor released
        self._handling = 0  # delivered to the target, not finished
        self._waiting = 0  # delivered to the target, not started (a crash strands these)
        self._settled_meanwhile: set[str] | None = None  # settled while a fetch ran
        self._acks: list[Delivery] = []
        self._journaled: list[Delivery] = []  # handled, start still journaled until acked
        self._failures: list[tuple[Delivery, BaseException]] = []
        self._dead: list[tuple[Delivery, str]] = []
        self._retries: list[Delivery] = []
        self._timers: dict[str, TimerHandle] = {}
        self._wake = asyncio.Event()  # work for the worker task
        self._wake_pending = False  # _wake set for a handled delivery, not yet seen by the worker
        self._room = asyncio.Event()  # room for intake: a page started, acks flushed, a failure
        self._reader: asyncio.Task[None] | None = None
        self._worker: asyncio.Task[None] | None = None
        self._lag_reading: asyncio.Task[None] | None = None  # reads stats.lag beside the fetches
        self._closing = False
        self._finishing = False
        self._closed = False
        self._target_ref: ActorRef | None = None
        #: the system's middleware, then this bridge's own (troupe.middleware)
        self.middleware = self.system.middleware.extended(middleware)
        self._me = self.ref  # looked at once per message

    # -- actor side ------------------------------------------------------------------------

    @property
    def in_flight(self) -> int:
        """Messages taken from the broker and neither settled nor released."""
        return len(self._in_flight)

    def on_start(self) -> None:
        self._reader = asyncio.get_running_loop().create_task(self._guard(self._read_loop))

    def receive(self, message: Any) -> Any:
        if isinstance(message, ConnectionLost | _Failure):
            raise message.error
        logger.warning("consumer bridge %s ignores message %r", self.name, message)
        return None

    async def on_stop(self) -> None:
        """Drain: stop intake, let in-flight work finish, ack only what was handled."""
        try:
            await self._drain()
        except asyncio.CancelledError:
            # killed while draining (a kill during a stop or restart): no task of the bridge is
            # left to notice it (the reader ended, the worker waits for work that will not
            # come), so it ends here as a killed bridge does. Else its session stays open and
            # keeps what it holds: on RabbitMQ, also what the drain released, pushed back to
            # the same channel, so those messages are never delivered again.
            self._closed = False  # (the drain sets it before closing the session)
            self._abandon()
            raise

    async def _drain(self) -> None:
        self._closing = True
        await _finish(self._reader, self.block + 0.2)  # a fetch in progress returns first
        unhandled: list[Delivery] = []
        for entry_id, handle in self._timers.items():
            handle.cancel()
            delivery = self._in_flight.pop(entry_id, None)  # waiting for a retry
            if delivery is not None:
                unhandled.append(delivery)
        self._timers.clear()
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.drain_timeout
        while self._handling and loop.time() < deadline:
            self._room.clear()
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(deadline - loop.time()):
                    await self._room.wait()
        self._finishing = True  # the worker settles what is left, then ends
        self._wake.set()
        worker = self._worker
        if worker is not None and not worker.done():
            await asyncio.wait({worker}, timeout=max(1.0, deadline - loop.time()))
        await _finish(worker, 0)
        session = self._session
        try:
            await self._flush()
            unhandled += self._retries
            if session is not None and unhandled:
                await session.release(unhandled)
        except BrokerError as exc:
            logger.warning("bridge %s could not settle during drain: %s", self.name, exc)
        self._retries.clear()
        if self._handling:
            logger.warning(
                "bridge %s stopped with %d messages still being handled; they stay unacked",
                self.name,
                self._handling,
            )
        self._closed = True
        self.stats.in_flight = 0
        if session is not None:
            with contextlib.suppress(BrokerError):
                await session.close()
        if not self._handling:
            self._close_log()

    def _close_log(self) -> None:
        log, self._log = self._log, None
        if log is not None:
            log.close()

    # -- tasks -------------------------------------------------------------------------------

    async def _guard(self, work: Callable[[], Awaitable[None]]) -> None:
        """Run one of the bridge's tasks; a failure fails the actor (its supervisor decides)."""
        try:
            await work()
        except asyncio.CancelledError:
            raise
        except BaseException as exc:
            if self._closing:
                return
            self._closing = True
            if not self.ref.is_alive:
                self._abandon()
                return
            if isinstance(exc, ConnectionError):
                self.stats.connection_failures += 1
                delay = self.broker.connection_lost(self.system.clock.now())
                # one log line: the restart decision's, naming this bridge, with the cause
                # (which names the broker) and when the restarted bridge reconnects
                lost = BrokerConnectionError(f"{exc} (reconnecting in {delay:.2f} s)")
                lost.log_traceback = False  # type: ignore[attr-defined]
                self.ref.tell(ConnectionLost(self.name, self.broker.url, lost))
            else:
                self.ref.tell(_Failure(work.__name__.strip("_"), exc))

    def _alive(self) -> bool:
        if self.ref.is_alive:
            return True
        self._abandon()
        return False

    def _abandon(self) -> None:
        """The bridge was killed (no drain): drop everything, as a crashed process would."""
        if self._closed:
            return
        self._closing = self._finishing = self._closed = True
        for handle in self._timers.values():
            handle.cancel()
        self._timers.clear()
        self._in_flight.clear()
        self.stats.in_flight = 0
        if not self._handling:
            self._close_log()
        self._wake.set()
        session = self._session
        if session is not None:  # nothing settled: AMQP/Kafka give its deliveries back now
            task = asyncio.get_running_loop().create_task(session.close())
            task.add_done_callback(_quiet)

    async def _open(self) -> ConsumerSession | None:
        """Open the session, retrying in place with the broker's reconnect backoff.

        A restarted bridge first waits out the backoff of the loss that failed it.
        While the broker stays unreachable it keeps trying (one WARNING for the
        outage, one INFO once connected again); None when stopped meanwhile.
        """
        clock = self.system.clock
        failures = 0
        while not self._closing:
            wait = self.broker.reconnect_wait(clock.now())
            if wait > 0:
                await clock.sleep(wait)
                if self._closing:
                    return None
            try:
                session = await self.broker.consume(
                    self.stream,
                    self.group,
                    self.consumer,
                    window=self._window(),
                    claim_idle=self.claim_idle,
                    delay_poll=self.delay_poll,
                )
            except ConfigError as exc:
                # a setting the broker refuses (a queue declared with other arguments):
                # restarting cannot help, so the bridge stops, with one line saying why
                logger.error(
                    "bridge %s stops: %s (broker %s); fix the setting and start it again",
                    self.name,
                    exc,
                    self.broker.url,
                )
                self._closing = True
                self.ref.stop()
                return None
            except BrokerConnectionError as exc:
                failures += 1
                self.stats.connection_failures += 1
                delay = self.broker.connection_lost(clock.now())
                log = logger.warning if failures == 1 else logger.debug
                log(
                    "bridge %s cannot reach the broker (%s); retrying in %.2f s",
                    self.name,
                    exc,
                    delay,
                )
                continue
            if failures:
                logger.info(
                    "bridge %s connected to %s after %d failed attempts",
                    self.name,
                    self.broker.url,
                    failures,
                )
            return session
        return None

    async def _read_loop(self) -> None:
        session = await self._open()
        if session is None:
            return
        self._session, self._log = session, session.attempts
        if self.ownership is not None:
            session.listen(self.ownership)
        if self._closed:  # killed while it opened: _abandon had no session to close
            with contextlib.suppress(BrokerError):
                await session.close()
        if self._closing or not self._alive():
            self._close_log()
            return
        self._worker = asyncio.get_running_loop().create_task(self._guard(self._work_loop))
        try:
            await self._fetch_loop(session)
        finally:
            lag, self._lag_reading = self._lag_reading, None
            if lag is not None:  # let a reading in progress end (it may be opening a channel)
                await _finish(lag, LAG_WAIT)

    async def _fetch_loop(self, session: ConsumerSession) -> None:
        loop = asyncio.get_running_loop()
        next_lag = loop.time()
        while not self._closing and not self.system.is_closing and self._alive():
            room = await self._wait_for_room()
            if not room:
                return
            settled: set[str] = set()
            self._settled_meanwhile = settled
            deliveries = await session.fetch(room, self.block)
            self._settled_meanwhile = None
            if settled:  # a claim raced with their ack or DLQ move: handled already
                deliveries = [d for d in deliveries if d.entry_id not in settled]
            if self._closing or not self._alive():
                if deliveries and not self._closed:
                    await session.release(deliveries)  # taken while stopping: not handled
                return
            self._dispatch_all(deliveries)
            reading = self._lag_reading
            if loop.time() >= next_lag and (reading is None or reading.done()):
                # read beside the fetches (a Kafka member asks the broker for the ends of
                # partitions it has not fetched yet): the next page does not wait for it
                next_lag = loop.time() + LAG_INTERVAL
                self._lag_reading = loop.create_task(self._read_lag(session))

    async def _read_lag(self, session: ConsumerSession) -> None:
        try:
            self.stats.lag = await session.lag()
        except (BrokerError, ConnectionError) as exc:  # the fetches meet it too, and say so
            logger.debug("bridge %s could not read its lag: %s", self.name, exc)
        except Exception:  # not the bridge's work: reported, the bridge goes on
            logger.exception("bridge %s: reading its lag failed", self.name)

    def _window(self) -> int:
        if self.prefetch is not None:
            return self.prefetch
        ref = self._resolve_target()  # push brokers (AMQP prefetch) hold no more than this
        return ref.mailbox_capacity if ref is not None else self.batch

    async def _work_loop(self) -> None:
        while not self._finishing:
            await self._wake.wait()
            self._wake.clear()
            self._wake_pending = False
            if not self._alive():
                return
            await self._flush()

    async def _flush(self) -> None:
        """Ack handled deliveries in one call, count failures, dead-letter, renew retries."""
        session, log = self._session, self._log
        if session is None or log is None or self._closed:
            return
        while self._acks or self._failures or self._dead or self._retries:
            if self._acks:
                acks, self._acks = self._acks, []
                await session.ack(acks)
                if self._journaled:  # the others' starts were cleared when they returned
                    journaled, self._journaled = self._journaled, []
                    log.settled(journaled)
                self.stats.acked += len(acks)
                self._forget(acks)
            if self._failures:
                failures, self._failures = self._failures, []
                last = self.max_deliveries - 1
                for delivery, exc in failures:
                    if delivery.attempts < last:  # durable before the retry is scheduled
                        await log.failed(delivery)
                    # else dead-lettered next, its start still journaled: a crash before
                    # the DLQ move counts it all the same, one round trip sooner
                    delivery.attempts += 1
                    self._after_failure(delivery, exc)
            if self._dead:
                dead, self._dead = self._dead, []
                for delivery, reason in dead:
                    await session.dead_letter(
                        delivery, dead_message(delivery, reason, delivery.attempts)
                    )
                    log.settled([delivery])
                    self.stats.dead_lettered += 1
                    self._forget([delivery])
                    for hook in self.middleware.after_dead_letter:
                        hook(self, delivery, reason)
                    logger.warning(
                        "bridge %s dead-lettered %s entry %s after %d attempts: %s",
                        self.name,
                        delivery.stream,
                        delivery.entry_id,
                        delivery.attempts,
                        reason,
                    )
            if self._retries:
                retries, self._retries = self._retries, []
                if self._closing:  # not delivered again now: released for later
                    await session.release(retries)
                    for delivery in retries:
                        self._in_flight.pop(delivery.entry_id, None)
                    continue
                renewed = await session.renew(retries)
                kept = {d.entry_id for d in renewed}
                for delivery in retries:
                    if delivery.entry_id not in kept:  # settled or taken over meanwhile
                        self._in_flight.pop(delivery.entry_id, None)
                self.stats.redelivered += len(renewed)
                self._dispatch_all(renewed, fresh=False)
            self.stats.in_flight = len(self._in_flight)
            self._room.set()

    def _forget(self, settled: Sequence[Delivery]) -> None:
        meanwhile = self._settled_meanwhile
        for delivery in settled:
            self._in_flight.pop(delivery.entry_id, None)
            if meanwhile is not None:
                meanwhile.add(delivery.entry_id)

    # -- intake --------------------------------------------------------------------------------

    def _resolve_target(self) -> ActorRef | None:
        ref = self._target_ref
        if ref is not None and ref.is_alive:
            return ref
        target = self.target
        ref = target if isinstance(target, ActorRef) else self.system.find(target)
        if ref is None or not ref.is_alive:
            self._target_ref = None
            return None
        self._target_ref = ref
        if self.payload_type is None and self.serializer.content_type == JSON.content_type:
            declared = ref.message_type  # the target's handler declares its message type
            current = getattr(self.serializer, "message_type", None)
            if declared is not None and declared is not current:
                self.serializer = typed(declared)
        return ref

    def _free_room(self) -> int:
        ref = self._resolve_target()
        if ref is None:
            return 0
        batch, waiting = self.batch, self._waiting
        if waiting > batch:
            return 0  # a page waits behind the one running: fetch once that one has started
        prefetch = self.prefetch or ref.mailbox_capacity
        room = min(ref.mailbox_room, prefetch - len(self._in_flight), batch, 2 * batch - waiting)
        return max(0, room)

    async def _wait_for_room(self) -> int:
        while not self._closing:
            room = self._free_room()
            if room > 0:
                return room
            self._room.clear()
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(0.05):  # not wait_for: it can swallow a cancel
                    await self._room.wait()
        return 0

    def _dispatch_all(self, deliveries: Sequence[Delivery], *, fresh: bool = True) -> None:
        """Decode a page of deliveries and hand what decodes to the target in one call
        (dead-lettering what cannot be delivered). ``fresh``: just fetched (else a retry
        or a delivery that waited for its target)."""
        in_flight = self._in_flight
        stats = self.stats
        serializer = self.serializer
        loads = serializer.loads
        content_type = serializer.content_type
        max_deliveries, max_broker = self.max_deliveries, self.max_broker_deliveries
        page: list[Delivery] = []
        items: list[tuple[Any, dict[str, str]]] = []
        for delivery in deliveries:
            entry_id = delivery.entry_id
            if fresh:
                if entry_id in in_flight:
                    continue  # taken over back while we still hold it
                if delivery.deliveries > 1:
                    stats.redelivered += 1
            in_flight[entry_id] = delivery
            message = delivery.message
            if message is None:
                stats.malformed += 1
                self._dead_letter(delivery, delivery.error or "malformed entry")
                continue
            if delivery.attempts >= max_deliveries or (
                delivery.deliveries - delivery.accounted > max_broker
            ):
                self._dead_letter(delivery, self._exhausted(delivery))
                continue
            headers = message.headers
            try:
                # a content type other than the serializer's may pick another one
                if not headers or (len(headers) == 1 and headers.get(CONTENT_TYPE) == content_type):
                    try:
                        payload = loads(message.body)
                    except Exception:
                        payload = decode_body(serializer, message)  # raises, naming the cause
                else:
                    payload = decode_body(serializer, message)
            except MalformedMessage as exc:
                stats.malformed += 1
                self._dead_letter(delivery, str(exc))
                continue
            # the delivery's headers for the target; the message's headers are this
            # delivery's own (decoded for it): no copy
            attempts = delivery.attempts
            headers[ATTEMPT] = _ATTEMPTS[attempts] if attempts < 8 else str(attempts + 1)
            headers[MESSAGE_ID] = message.id
            headers[STREAM] = delivery.stream
            headers[ENTRY_ID] = entry_id
            if message.key is not None:
                headers[KEY] = message.key
            page.append(delivery)
            items.append((payload, headers))
        if page:
            self._deliver(page, items)
        stats.in_flight = len(in_flight)

    def _exhausted(self, delivery: Delivery) -> str:
        """Why ``delivery`` goes to the DLQ before it is delivered again."""
        if delivery.attempts >= self.max_deliveries:
            return (
                f"started {delivery.attempts} times without finishing "
                f"(max_deliveries={self.max_deliveries}); the consumer crashed or was killed"
            )
        unknown = delivery.deliveries - 1 - delivery.accounted
        return (
            f"delivered {delivery.deliveries} times by the broker without an ack, "
            f"{unknown} of them not explained by a consumer's end "
            f"(max_broker_deliveries={self.max_broker_deliveries})"
        )

    def _deliver(self, page: list[Delivery], items: list[tuple[Any, dict[str, str]]]) -> None:
        ref = self._target_ref
        if ref is None or not ref.is_alive:
            ref = self._resolve_target()
        if ref is None:  # not the messages' fault: wait for the target, count nothing
            for delivery in page:
                self._wait_for_target(delivery)
            return
        middleware = self.middleware
        hooked = bool(middleware.before_deliver or middleware.after_deliver)
        if middleware.before_deliver:  # a hook may skip a message or hold it back
            kept = [
                (delivery, item)
                for delivery, item in zip(page, items, strict=True)
                if self._before_deliver(delivery, item[0], item[1])
            ]
            if not kept:
                return
            page = [delivery for delivery, _ in kept]
            items = [item for _, item in kept]
        n = len(page)
        self._handling += n
        self._waiting += n
        self.stats.delivered += n
        tracker = _HookedPage(self, page, items) if hooked else _Page(self, page)
        senders: list[ActorRef | None] | None = None
        if type(self).unwrap is not ConsumerBridge.unwrap:
            unwrapped = [(self.unwrap(payload), headers) for payload, headers in items]
            items = [(message, headers) for (message, _), headers in unwrapped]
            senders = [sender for (_, sender), _ in unwrapped]
        # refused messages (a full mailbox that rejects) finish unstarted: tried again later
        ref.deliver_page(items, tracker, senders)

    def _before_deliver(self, delivery: Delivery, payload: Any, headers: dict[str, str]) -> bool:
        """Run ``before_deliver`` hooks: False when one skipped or held the message."""
        for hook in self.middleware.before_deliver:
            try:
                hold = hook(self, delivery, payload, headers)
            except SkipMessage as skip:
                self._acks.append(delivery)  # never started: nothing journaled to clear
                self._wake.set()
                for after in self.middleware.after_skip:
                    after(self, delivery, skip)
                return False
            if hold is not None and hold > 0:  # held back (a rate limit): no attempt counted
                self._timers[delivery.entry_id] = self.system.clock.call_later(
                    hold, self._redeliver_due, delivery
                )
                return False
        return True

    def unwrap(self, payload: Any) -> tuple[Any, ActorRef | None]:
        """The message to hand to the target for a decoded ``payload``, and its sender
        (the target's ``self.sender``): ``(payload, None)``. A subclass may unwrap an
        envelope of its own (remote actors take the sender out of it)."""
        return payload, None

    def _wait_for_target(self, delivery: Delivery) -> None:
        self._timers[delivery.entry_id] = self.system.clock.call_later(
            TARGET_WAIT, self._redeliver_due, delivery
        )

    def _finished(self, delivery: Delivery, started: int, error: BaseException | None) -> None:
        """A delivery the target did not handle (``error``: why), or any delivery once the
        bridge closed (handled ones: :meth:`_Page.finished`)."""
        self._handling -= 1
        if self._closed:
            # after the drain deadline, or the bridge was killed: stays unacked
            if not self._handling:
                self._close_log()
            return
        assert error is not None
        if not started:  # never reached a handler: not an attempt
            self._waiting -= 1
            if self._closing:
                self._retries.append(delivery)  # released by the drain
            else:
                self._wait_for_target(delivery)
        else:
            self.stats.failed += 1
            self._failures.append((delivery, error))
        self._wake.set()
        self._room.set()

    def _after_failure(self, delivery: Delivery, exc: BaseException) -> None:
        if delivery.attempts >= self.max_deliveries:
            reason = f"{type(exc).__name__}: {exc}"
            self._dead_letter(delivery, f"failed {delivery.attempts} attempts; last: {reason}")
            return
        if self._closing:
            self._retries.append(delivery)  # released by the drain
            return
        delay = self.retry.delay(delivery.attempts - 1)
        self._timers[delivery.entry_id] = self.system.clock.call_later(
            delay, self._retry_due, delivery
        )
        for hook in self.middleware.after_retry:
            hook(self, delivery, exc, delay)

    def _redeliver_due(self, delivery: Delivery) -> None:
        if self._timers.pop(delivery.entry_id, None) is not None and not self._closing:
            self._dispatch_all((delivery,), fresh=False)

    def _retry_due(self, delivery: Delivery) -> None:
        if self._timers.pop(delivery.entry_id, None) is None:
            return
        self._retries.append(delivery)
        self._wake.set()

    def _dead_letter(self, delivery: Delivery, reason: str) -> None:
        self._dead.append((delivery, reason))
        self._wake.set()


def _quiet(task: asyncio.Task[None]) -> None:
    if not task.cancelled() and (exc := task.exception()) is not None:
        logger.debug("closing an abandoned session failed: %r", exc)


async def _finish(task: asyncio.Task[None] | None, grace: float) -> None:
    """Let ``task`` end by itself within ``grace`` seconds, then cancel it.

    The cancel is repeated: redis-py's asyncio client can swallow a cancellation
    that lands inside a command, and the task then runs on to its next await.
    """
    if task is None or task.done():
        return
    if grace > 0:
        await asyncio.wait({task}, timeout=grace)
    for _ in range(10):
        if task.done():
            break
        task.cancel()
        await asyncio.wait({task}, timeout=0.5)
    else:
        logger.error("task %s did not end after 10 cancellations", task.get_name())
        return
    if not task.cancelled() and (exc := task.exception()) is not None:
        logger.debug("task %s ended with %r", task.get_name(), exc)


__all__ = ["ConnectionLost", "ConsumerBridge"]
