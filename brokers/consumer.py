"""``ConsumerBridge``: the delivery contract, written once for every broker.

A consumer bridge is an actor that reads a stream as one consumer of a group
and delivers each payload to a target actor (by ref or by name):

- it acks only after the target's handler returned;
- a handler failure is retried after the shared :class:`~troupe.supervisors.Backoff`
  delay as a broker redelivery (the broker counts it); once the broker's count
  reaches ``max_deliveries`` the message goes to the stream's DLQ with the
  reason in its headers — also when the count grew because consumers crashed;
- a payload that does not decode goes to the DLQ at once, with the reason;
- intake is bounded by the room in the target's mailbox (and ``prefetch``), so
  backpressure reaches the broker as a smaller read COUNT;
- on stop or restart it drains: stops reading, lets in-flight messages finish
  within ``drain_timeout``, acks what was handled and nothing else;
- a lost connection fails the bridge (its supervisor restarts it); the broker's
  reconnect backoff delays the restarted bridge, which first re-claims its own
  pending entries, then idle ones of dead consumers, then reads new ones.

The payload reaches the target as the message; broker metadata is in
``self.headers`` (``troupe-attempt``, ``troupe-message-id``, ``troupe-stream``,
``troupe-entry-id``, ``traceparent`` and the publisher's headers).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

from troupe.actor import Actor
from troupe.backoff import Backoff
from troupe.envelope import Envelope
from troupe.errors import require_at_least
from troupe.ref import ActorRef

from .base import Broker, BrokerError, ConsumerStats, Delivery
from .message import (
    ATTEMPT,
    ENTRY_ID,
    MESSAGE_ID,
    STREAM,
    MalformedMessage,
    Serializer,
    decode_body,
)

if TYPE_CHECKING:
    from troupe.cell import ActorCell
    from troupe.clock import TimerHandle

logger = logging.getLogger(__name__)

TARGET_WAIT = 0.1  # seconds between looks for a target actor that is not running
LAG_INTERVAL = 1.0  # seconds between lag readings for stats.lag
DEFAULT_RETRY = Backoff(initial=0.1, maximum=5.0, multiplier=2.0, jitter="equal")


class _Failed:
    """Sent by the bridge's own tasks to itself: fail the actor with ``exc``."""

    __slots__ = ("exc",)

    def __init__(self, exc: BaseException) -> None:
        self.exc = exc


class _Outcome:
    """The reply slot of one delivery, in place of an asyncio.Future.

    The runtime settles a reply with ``set_result``/``set_exception`` once the
    handler returned or failed (or the message was dropped or undeliverable);
    this one tells the bridge at once, without a future and a loop callback
    per message. It offers the Future methods the runtime uses.
    """

    __slots__ = ("_bridge", "_delivery", "_exc", "_state")

    def __init__(self, bridge: ConsumerBridge, delivery: Delivery) -> None:
        self._bridge = bridge
        self._delivery = delivery
        self._state = 0  # 0 pending, 1 result, 2 exception
        self._exc: BaseException | None = None

    def done(self) -> bool:
        return self._state != 0

    def cancelled(self) -> bool:
        return False

    def set_result(self, result: Any) -> None:
        if self._state == 0:
            self._state = 1
            self._bridge._settled(self._delivery, None)

    def set_exception(self, exc: BaseException) -> None:
        if self._state == 0:
            self._state = 2
            self._exc = exc
            self._bridge._settled(self._delivery, exc)

    def exception(self) -> BaseException | None:
        return self._exc


class ConsumerBridge(Actor):
    """Deliver a stream's messages to ``target``, at least once, acking after handling.

    >>> from troupe.brokers import ConsumerBridge, connect
    >>> # system.spawn(ConsumerBridge, connect("memory://"), "orders", "billing", "biller")

    ``consumer`` names this consumer in the group; keep it stable across restarts
    of the process to resume its own pending entries at once (others' pending
    entries are claimed after ``claim_idle`` seconds). ``block`` is how long one
    read waits for new entries; delayed messages that fell due are moved into the
    stream every ``delay_poll`` seconds.
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
        retry: Backoff = DEFAULT_RETRY,
        batch: int = 100,
        prefetch: int | None = None,
        block: float = 0.5,
        claim_idle: float = 30.0,
        drain_timeout: float = 5.0,
        delay_poll: float = 0.05,
    ) -> None:
        require_at_least("max_deliveries", max_deliveries, 1)
        require_at_least("batch", batch, 1)
        self.broker = broker
        self.stream = stream
        self.group = group
        self.target = target
        self.consumer = consumer or f"{socket.gethostname()}-{os.getpid()}-{self.name}"
        self.serializer = serializer or broker.serializer
        self.max_deliveries = max_deliveries
        self.retry = retry
        self.batch = batch
        self.prefetch = prefetch
        self.block = block
        self.claim_idle = claim_idle
        self.drain_timeout = drain_timeout
        self.delay_poll = delay_poll
        self.stats: ConsumerStats = broker.stats.consumer(stream, group, self.consumer)
        self._in_flight: dict[str, Delivery] = {}
        self._handling = 0  # delivered to the target, handler not finished
        self._acks: list[str] = []
        self._dead: list[tuple[Delivery, str]] = []
        self._retries: list[Delivery] = []
        self._timers: dict[str, TimerHandle] = {}
        self._wake = asyncio.Event()  # work for the worker task
        self._room = asyncio.Event()  # an in-flight message finished
        self._reader: asyncio.Task[None] | None = None
        self._worker: asyncio.Task[None] | None = None
        self._closing = False
        self._finishing = False
        self._closed = False
        self._target_cell: ActorCell | None = None

    # -- actor side ------------------------------------------------------------------------

    @property
    def in_flight(self) -> int:
        """Messages taken from the broker and not yet acked or dead-lettered."""
        return len(self._in_flight)

    def on_start(self) -> None:
        self._reader = asyncio.get_running_loop().create_task(self._guard(self._read_loop))

    def receive(self, message: Any) -> Any:
        if isinstance(message, _Failed):
            raise message.exc
        logger.warning("consumer bridge %s ignores message %r", self.name, message)
        return None

    async def on_stop(self) -> None:
        """Drain: stop intake, let in-flight work finish, ack only what was handled."""
        self._closing = True
        await _finish(self._reader, self.block + 0.2)  # a read in progress returns first
        for handle in self._timers.values():
            handle.cancel()
        for entry_id in self._timers:
            self._in_flight.pop(entry_id, None)  # waiting for a retry: stays pending
        self._timers.clear()
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.drain_timeout
        while self._handling and loop.time() < deadline:
            self._room.clear()
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(deadline - loop.time()):
                    await self._room.wait()
        self._retries.clear()
        self._finishing = True  # the worker acks what is left, then ends
        self._wake.set()
        worker = self._worker
        if worker is not None and not worker.done():
            await asyncio.wait({worker}, timeout=max(1.0, deadline - loop.time()))
        await _finish(worker, 0)
        try:
            await self._flush()
        except BrokerError as exc:
            logger.warning("bridge %s could not ack during drain: %s", self.name, exc)
        if self._handling:
            logger.warning(
                "bridge %s stopped with %d messages still being handled; they stay pending",
                self.name,
                self._handling,
            )
        self._closed = True
        self.stats.in_flight = 0

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
            if isinstance(exc, ConnectionError):
                self.stats.connection_failures += 1
                delay = self.broker.connection_lost(self.system.clock.now())
                logger.warning(
                    "bridge %s lost %s (%s); restarting, reconnect in %.2f s",
                    self.name,
                    self.broker.url,
                    exc,
                    delay,
                )
            self._closing = True
            self.ref.tell(_Failed(exc))

    async def _read_loop(self) -> None:
        clock = self.system.clock
        wait = self.broker.reconnect_wait(clock.now())
        if wait > 0:
            await clock.sleep(wait)
        await self.broker.connect()
        await self.broker.ensure_group(self.stream, self.group)
        self._worker = asyncio.get_running_loop().create_task(self._guard(self._work_loop))
        cursor: str | None = None
        while True:  # first the entries this consumer left pending (a restart)
            room = await self._wait_for_room()
            if not room:
                return  # stopping
            claimed, cursor = await self.broker.claim_own(
                self.stream, self.group, self.consumer, room, after=cursor, exclude=self._in_flight
            )
            self._dispatch_all(claimed)
            if cursor is None:
                break
        loop = asyncio.get_running_loop()
        claim_every = max(self.claim_idle / 2, 0.01)
        next_claim = loop.time() + claim_every
        next_promote = next_lag = loop.time()
        while not self._closing and not self._system_closing():
            room = await self._wait_for_room()
            if not room:
                return
            if loop.time() >= next_promote:
                next_promote = loop.time() + self.delay_poll
                await self.broker.promote_due(self.stream)
            if loop.time() >= next_claim:
                next_claim = loop.time() + claim_every
                idle = await self.broker.claim_idle(
                    self.stream, self.group, self.consumer, self.claim_idle, room
                )
                self._dispatch_all(idle)
                room = await self._wait_for_room()
                if not room:
                    return
            if loop.time() >= next_lag:
                next_lag = loop.time() + LAG_INTERVAL
                self.stats.lag = await self.broker.lag(self.stream, self.group)
            deliveries = await self.broker.read(
                self.stream, self.group, self.consumer, room, self.block
            )
            self._dispatch_all(deliveries)

    async def _work_loop(self) -> None:
        while not self._finishing:
            await self._wake.wait()
            self._wake.clear()
            await self._flush()

    async def _flush(self) -> None:
        """Ack handled entries in one call, dead-letter, and redeliver retries."""
        broker = self.broker
        while self._acks or self._dead or self._retries:
            if self._acks:
                ids, self._acks = self._acks, []
                await broker.ack(self.stream, self.group, ids)
                self.stats.acked += len(ids)
                for entry_id in ids:
                    self._in_flight.pop(entry_id, None)
            if self._dead:
                dead, self._dead = self._dead, []
                for delivery, reason in dead:
                    await broker.dead_letter(delivery, reason)
                    self.stats.dead_lettered += 1
                    self._in_flight.pop(delivery.entry_id, None)
                    logger.warning(
                        "dead-lettered %s entry %s after %d deliveries: %s",
                        delivery.stream,
                        delivery.entry_id,
                        delivery.deliveries,
                        reason,
                    )
            if self._retries:
                retries, self._retries = self._retries, []
                for delivery in retries:
                    if self._closing:  # not redelivered now: stays pending for later
                        self._in_flight.pop(delivery.entry_id, None)
                        continue
                    again = await broker.redeliver(delivery, self.consumer)
                    if again is None:
                        self._in_flight.pop(delivery.entry_id, None)
                    else:
                        self._dispatch(again)
            self.stats.in_flight = len(self._in_flight)
            self._room.set()

    # -- intake --------------------------------------------------------------------------------

    def _system_closing(self) -> bool:
        return self.system.is_closing

    def _resolve_target(self) -> ActorCell | None:
        cell = self._target_cell
        if cell is not None and not cell.is_terminated:
            return cell
        target = self.target
        ref = target if isinstance(target, ActorRef) else self.system.find(target)
        if ref is None or not ref.is_alive:
            self._target_cell = None
            return None
        self._target_cell = self.system.cell_of(ref)
        return self._target_cell

    def _free_room(self) -> int:
        cell = self._resolve_target()
        if cell is None:
            return 0
        mailbox = cell.mailbox
        prefetch = self.prefetch or mailbox.capacity
        room = min(mailbox.capacity - len(mailbox) - mailbox.waiting, prefetch - self.in_flight)
        return max(0, min(self.batch, room))

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

    def _dispatch_all(self, deliveries: list[Delivery]) -> None:
        if self._closing:
            return  # read while stopping: left pending, resumed after a restart
        for delivery in deliveries:
            if delivery.entry_id in self._in_flight and delivery.entry_id not in self._timers:
                continue  # claimed back while we still handle it
            self._dispatch(delivery)
        self.stats.in_flight = len(self._in_flight)

    def _dispatch(self, delivery: Delivery, *, fresh: bool = True) -> None:
        self._in_flight[delivery.entry_id] = delivery
        self._timers.pop(delivery.entry_id, None)
        if fresh and delivery.deliveries > 1:
            self.stats.redelivered += 1
        message = delivery.message
        if message is None:
            self.stats.malformed += 1
            self._dead_letter(delivery, delivery.error or "malformed entry")
            return
        if delivery.deliveries > self.max_deliveries:
            self._dead_letter(
                delivery,
                f"delivered {delivery.deliveries} times without an ack "
                f"(max_deliveries={self.max_deliveries}); the consumer crashed or stopped",
            )
            return
        try:
            payload = decode_body(self.serializer, message)
        except MalformedMessage as exc:
            self.stats.malformed += 1
            self._dead_letter(delivery, str(exc))
            return
        cell = self._resolve_target()
        if cell is None:  # not the message's fault: wait for the target, do not count it
            self._timers[delivery.entry_id] = self.system.clock.call_later(
                TARGET_WAIT, self._target_wait_over, delivery
            )
            return
        headers = message.headers  # this delivery's own copy, decoded for it
        headers[ATTEMPT] = str(delivery.deliveries)
        headers[MESSAGE_ID] = message.id
        headers[STREAM] = delivery.stream
        headers[ENTRY_ID] = delivery.entry_id
        self._handling += 1
        self.stats.delivered += 1
        reply: Any = _Outcome(self, delivery)
        cell.deliver(Envelope(payload, reply, None, headers))

    def _settled(self, delivery: Delivery, exc: BaseException | None) -> None:
        if self._closed:
            return  # finished after the drain deadline: left pending, redelivered later
        self._handling -= 1
        if exc is not None:
            self._failed(delivery, exc)
        else:
            self._acks.append(delivery.entry_id)
            self._wake.set()
        self._room.set()

    def _failed(self, delivery: Delivery, exc: BaseException) -> None:
        self.stats.failed += 1
        if self._closing:
            self._in_flight.pop(delivery.entry_id, None)  # not handled: stays pending
            return
        if delivery.deliveries >= self.max_deliveries:
            reason = f"{type(exc).__name__}: {exc}"
            self._dead_letter(delivery, f"failed {delivery.deliveries} deliveries; last: {reason}")
            return
        delay = self.retry.delay(delivery.deliveries - 1)
        self._timers[delivery.entry_id] = self.system.clock.call_later(
            delay, self._retry_due, delivery
        )

    def _target_wait_over(self, delivery: Delivery) -> None:
        if self._timers.pop(delivery.entry_id, None) is not None and not self._closing:
            self._dispatch(delivery, fresh=False)

    def _retry_due(self, delivery: Delivery) -> None:
        if self._timers.pop(delivery.entry_id, None) is None:
            return
        self._retries.append(delivery)
        self._wake.set()

    def _dead_letter(self, delivery: Delivery, reason: str) -> None:
        self._dead.append((delivery, reason))
        self._wake.set()


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


__all__ = ["ConsumerBridge"]
