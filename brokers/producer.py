"""``ProducerBridge``: an actor that publishes to a broker in batches, retried until a
delivery timeout, each publish reported once.

Send it payloads (published to its default stream) or :class:`Publish` messages.
The message being handled and up to ``batch - 1`` messages queued behind it
(``Actor.take_queued``) form one batch: one round trip per stream. ``batch`` is 500 by
default: one batch is in flight, so under load a batch covers the broker's round trip.

- **Delivery timeout.** A batch is retried with the ``retry`` Backoff through
  lost connections and broker errors until ``delivery_timeout`` seconds (default
  120, as Kafka's ``delivery.timeout.ms``) have passed since the bridge took it.
  No attempt outlives that deadline (a client that retries by itself is cancelled,
  and the broker withdraws what it can), so the outcome comes within
  ``delivery_timeout``; a permanent error (a message the broker refuses, a setting it
  rejects: ``ConfigError``) fails at once. An ask without a ``timeout`` waits for
  that outcome (the bridge's ``ask_timeout`` is None, not the system's 5 s), so it
  ends in the message id or a ``PublishError``, never an ``AskTimeout`` while the
  publish may still succeed.
  Messages sent meanwhile wait in the bridge's bounded mailbox and form the next
  batch. The bridge itself does not fail when the broker is unreachable: it keeps
  retrying, logs one warning when publishing starts failing and one line when it
  recovers.
- **Reported once.** ``await ref.ask(...)`` returns the message id once the
  broker stored it, or raises :class:`~troupe.brokers.PublishError` (cause
  chained). Told publishes that fail are counted in ``stats.failed`` and logged
  once per batch in one line (bridge, broker URL without password, stream,
  reason).
- **Stored once.** A batch keeps its message ids and a sequence number across
  attempts, and :meth:`Broker.publish_once` stores a (producer, sequence) once,
  so a retry after a lost reply adds no duplicate (Redis: one Lua script and a
  record that expires after ``delivery_timeout`` plus a margin).
- **Shutdown.** The in-flight batch keeps retrying until its delivery timeout or
  the system's shutdown deadline, whichever comes first; cut off at the deadline,
  its askers get a PublishError.

Every message of a batch, the one being handled included (``Actor.take_current``),
is settled as a :class:`~troupe.Queued`, so a failed publish reaches its asker
without failing the bridge, and each counts once in ``troupe_messages_total``
(the one being handled as ``ok`` even when its publish failed: the handler returned).
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import os
from collections.abc import Awaitable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from troupe import ConfigError, Middleware, Queued
from troupe.actor import Actor
from troupe.backoff import Backoff
from troupe.errors import require_at_least

from .base import WITHDRAW, Broker, BrokerError, ProducerStats, PublishError, PublishRefused
from .message import TRACEPARENT, Message, Serializer, build_message

logger = logging.getLogger(__name__)

DEFAULT_PUBLISH_RETRY = Backoff(initial=0.05, maximum=2.0, multiplier=2.0, jitter="equal")
DEFAULT_DELIVERY_TIMEOUT = 120.0
#: How much longer than ``delivery_timeout`` a broker remembers a stored batch.
DEDUPE_MARGIN = 30.0
#: Seconds without an answer after which an attempt counts as failing for the log.
SLOW_ATTEMPT = 2.0
#: Seconds a cancelled attempt may take to withdraw what it sent.
CANCEL_GRACE = 5.0
#: The most messages in one batch. A bridge has one batch in flight, so under load a
#: batch has to cover the broker's round trip: 500 (~75 KB of small JSON messages, about
#: what Kafka's producer keeps in flight per partition: five 16 KB batches). A batch is
#: only what is already queued, so an idle bridge still sends each message at once.
DEFAULT_BATCH = 500


@dataclass(frozen=True, slots=True)
class Publish:
    """A message for a ProducerBridge: a payload and where/how to publish it."""

    payload: Any
    stream: str | None = None  # the bridge's default stream when None
    key: str | None = None
    headers: Mapping[str, str] = field(default_factory=dict)
    delay: float | None = None
    at: float | None = None


@dataclass(slots=True)
class _Item:
    """One publish of a batch: its outcome goes to ``queued`` (or the handler's return)."""

    queued: Queued | None  # None for a told message being handled (nothing to settle)
    asked: bool
    outcome: str | BaseException | None = None


class ProducerBridge(Actor):
    """Publish what it receives to ``stream`` on ``broker``: batched, retried, reported once.

    >>> from troupe.brokers import ProducerBridge, Publish, connect
    >>> # ref = system.spawn(ProducerBridge, connect("memory://"), "orders")
    >>> # message_id = await ref.ask(Publish({"order": 1}, key="customer-7"))
    """

    def __init__(
        self,
        broker: Broker,
        stream: str | None = None,
        *,
        serializer: Serializer | None = None,
        batch: int = DEFAULT_BATCH,
        delivery_timeout: float = DEFAULT_DELIVERY_TIMEOUT,
        retry: Backoff = DEFAULT_PUBLISH_RETRY,
        middleware: Sequence[Middleware] = (),
    ) -> None:
        require_at_least("batch", batch, 1)
        if (
            isinstance(delivery_timeout, bool)
            or not isinstance(delivery_timeout, int | float)
            or not delivery_timeout > 0
        ):
            raise ConfigError(
                "delivery_timeout",
                f"must be a positive number of seconds, got {delivery_timeout!r}",
            )
        if not isinstance(retry, Backoff):
            raise ConfigError("retry", f"must be a troupe.Backoff, got {type(retry).__name__}")
        self.broker = broker
        self.stream = stream
        self.serializer = serializer
        self.batch = batch
        self.delivery_timeout = float(delivery_timeout)
        self.ask_timeout = None  # an ask waits for its outcome: each batch ends in time
        self.retry = retry
        self.stats: ProducerStats = broker.stats.producer(self.name)
        self.producer_id = os.urandom(8).hex()  # names this instance's batches to the broker
        self._sequence = itertools.count(1)
        self._failing_since: float | None = None  # set while publishing keeps failing
        #: the system's middleware, then this bridge's own (troupe.middleware)
        self.middleware = self.system.middleware.extended(middleware)

    async def receive(self, message: Any) -> Any:
        head = self.take_current()  # None when told: nobody waits for the outcome
        items = [_Item(head, head is not None)]
        payloads: list[tuple[Any, Mapping[str, str]]] = [(message, self.headers)]
        for queued in self.take_queued(self.batch - 1):
            items.append(_Item(queued, queued.asked))
            payloads.append((queued.message, queued.headers))
        try:
            await self._publish(items, payloads)
        except asyncio.CancelledError:
            self._cut_off(items)
            raise
        for item in items:
            if item.queued is None:
                continue
            if isinstance(item.outcome, BaseException):
                item.queued.reject(item.outcome)
            else:
                item.queued.resolve(item.outcome)
        return None  # every outcome went out through its Queued; told failures are counted

    async def _publish(
        self, items: list[_Item], payloads: list[tuple[Any, Mapping[str, str]]]
    ) -> None:
        """Publish the batch, one broker call per (stream, delay, at); fill in outcomes."""
        clock = self.system.clock
        deadline = clock.now() + self.delivery_timeout
        groups: dict[tuple[str, float | None, float | None], list[tuple[_Item, Message]]] = {}
        for item, (payload, headers) in zip(items, payloads, strict=True):
            try:
                stream, delay, at, msg = self._message(payload, headers)
            except Exception as exc:
                self.stats.failed += 1
                item.outcome = _publish_error(exc)
                if not item.asked:
                    logger.error(
                        "producer %s could not publish a told message: %s", self.name, item.outcome
                    )
                continue
            groups.setdefault((stream, delay, at), []).append((item, msg))
        for (stream, delay, at), members in groups.items():
            error = await self._send(stream, [m for _, m in members], delay, at, deadline)
            for item, msg in members:
                item.outcome = msg.id if error is None else error
            if self.middleware.after_publish:
                for _, msg in members:
                    self._after_publish(stream, msg.id if error is None else None, msg, error)
            if error is None:
                self.stats.published += len(members)
            else:
                self.stats.failed += len(members)
                told = sum(1 for item, _ in members if not item.asked)
                logger.error(
                    "producer %s gave up on %d messages to %r on %s (%d told, %d asked): %s",
                    self.name,
                    len(members),
                    stream,
                    self.broker.url,
                    told,
                    len(members) - told,
                    error,
                )

    def _message(
        self, payload: Any, headers: Mapping[str, str]
    ) -> tuple[str, float | None, float | None, Message]:
        if not isinstance(payload, Publish) and self.stream is not None:
            trace = headers.get(TRACEPARENT)  # a bare payload to the bridge's stream: no spec
            msg = build_message(
                payload,
                self.serializer or self.broker.serializer,
                key=None,
                headers={} if trace is None else {TRACEPARENT: trace},
            )
            return self.stream, None, None, msg
        spec = payload if isinstance(payload, Publish) else Publish(payload)
        stream = spec.stream or self.stream
        if stream is None:
            raise PublishError(
                "no stream: send Publish(payload, stream=...) or give the bridge a stream"
            )
        if (spec.delay or spec.at is not None) and not self.broker.capabilities.delayed:
            raise PublishError(f"{self.broker.capabilities.name} has no delayed delivery")
        all_headers = dict(spec.headers)  # the message's own: built without another copy
        if TRACEPARENT in headers and TRACEPARENT not in all_headers:
            all_headers[TRACEPARENT] = headers[TRACEPARENT]
        serializer = self.serializer or self.broker.serializer
        if not self.middleware.before_publish:
            msg = build_message(spec.payload, serializer, key=spec.key, headers=all_headers)
            return stream, spec.delay, spec.at, msg
        for hook in self.middleware.before_publish:
            hook(self, stream, spec.payload, all_headers)
        try:
            msg = build_message(spec.payload, serializer, key=spec.key, headers=all_headers)
        except Exception as exc:
            for after in self.middleware.after_publish:
                after(self, stream, None, all_headers, exc)
            raise
        return stream, spec.delay, spec.at, msg

    def _after_publish(
        self, stream: str, message_id: str | None, msg: Message, error: BaseException | None
    ) -> None:
        for hook in self.middleware.after_publish:
            hook(self, stream, message_id, msg.headers, error)

    async def _send(
        self,
        stream: str,
        messages: Sequence[Message],
        delay: float | None,
        at: float | None,
        deadline: float,
    ) -> PublishError | None:
        """Store ``messages`` once, retrying until ``deadline``; None or the final error."""
        clock = self.system.clock
        sequence = next(self._sequence)
        window = self.delivery_timeout + DEDUPE_MARGIN
        attempt = 0
        last: BaseException | None = None  # the last error the broker gave
        while True:
            try:
                await self._attempt(
                    stream,
                    self.broker.publish_once(
                        stream,
                        messages,
                        producer=self.producer_id,
                        sequence=sequence,
                        window=window,
                        delay=delay,
                        at=at,
                    ),
                    deadline,
                )
            except (BrokerError, ConfigError, TimeoutError) as exc:
                now = clock.now()
                attempt += 1
                if isinstance(exc, PublishRefused | ConfigError):  # retrying cannot help
                    error = PublishError(
                        f"publish to {stream!r} on {self.broker.url} refused: {exc}"
                    )
                    error.__cause__ = exc
                    return error
                if isinstance(exc, TimeoutError):
                    before = f"; before that: {last}" if last is not None else ""
                    exc = BrokerError(f"no answer from {self.broker.url} in time{before}")
                else:
                    last = exc
                self._note_failure(now, stream, exc)
                if now >= deadline:
                    error = PublishError(
                        f"publish to {stream!r} not confirmed within delivery_timeout "
                        f"{self.delivery_timeout:g} s ({attempt} attempts): {exc}"
                    )
                    error.__cause__ = exc
                    return error
                self.stats.retries += 1
                await clock.sleep(min(self.retry.delay(attempt - 1), deadline - now))
            else:
                self.stats.batches += 1
                self._note_success(clock.now(), stream)
                return None

    async def _attempt(self, stream: str, publish: Awaitable[Any], deadline: float) -> None:
        """One publish attempt, never past ``deadline`` (TimeoutError then).

        A client that keeps retrying by itself (aiokafka's idempotent producer never
        expires a batch) is cancelled at the deadline, and the broker withdraws what it
        can. An attempt unanswered after ``SLOW_ATTEMPT`` seconds counts as the start of
        an outage for the log (one line), while it goes on waiting.
        """
        clock = self.system.clock
        task = asyncio.ensure_future(publish)
        expired = False
        try:
            left = deadline - clock.now()
            done, _ = await asyncio.wait({task}, timeout=max(0.0, min(SLOW_ATTEMPT, left)))
            if not done and left > SLOW_ATTEMPT:
                self._note_failure(
                    clock.now(), stream, BrokerError(f"no answer within {SLOW_ATTEMPT:g} s")
                )
                await asyncio.wait({task}, timeout=max(0.0, deadline - clock.now()))
            if not task.done():
                expired = True
                raise TimeoutError
            task.result()
        finally:
            if not task.done():
                if expired:  # reported failed: the broker withdraws what it can, first
                    task.cancel(msg=WITHDRAW)
                    await asyncio.wait({task}, timeout=CANCEL_GRACE)
                else:
                    # the bridge is going away (stopped, killed): the publish is left to
                    # finish, not cancelled — a cancel could stop it before the client wrote
                    # it (RabbitMQ's per-route tasks), losing a message its asker was told
                    # may still be stored
                    _leave_to_finish(task)
            elif not task.cancelled():
                task.exception()  # retrieved: reported through the outcome

    def _note_failure(self, now: float, stream: str, exc: BaseException) -> None:
        if self._failing_since is None:
            self._failing_since = now
            logger.warning(
                "producer %s: publishing to %r on %s failed, retrying for up to %g s: %s",
                self.name,
                stream,
                self.broker.url,
                self.delivery_timeout,
                exc,
            )

    def _note_success(self, now: float, stream: str) -> None:
        since, self._failing_since = self._failing_since, None
        if since is not None:
            logger.info(
                "producer %s: publishing to %r on %s works again after %.1f s",
                self.name,
                stream,
                self.broker.url,
                now - since,
            )

    def _cut_off(self, items: list[_Item]) -> None:
        """The handler is cancelled (shutdown deadline): settle the batch, once."""
        error = PublishError("the producer stopped (shutdown deadline) before the broker confirmed")
        told = 0
        for item in items:
            if item.outcome is None and not item.asked:
                told += 1
            if item.queued is None:
                continue
            if isinstance(item.outcome, str):
                item.queued.resolve(item.outcome)
            else:
                item.queued.reject(item.outcome or error)
        if told:
            self.stats.failed += told
            logger.error(
                "producer %s stopped with %d told messages unconfirmed on %s: %s",
                self.name,
                told,
                self.broker.url,
                error,
            )


#: publishes of bridges that went away, held until they end (a task needs a reference)
_FINISHING: set[asyncio.Future[Any]] = set()


def _leave_to_finish(task: asyncio.Future[Any]) -> None:
    """Keep ``task`` running after its bridge stopped; its outcome is not reported (the
    askers already got a PublishError saying it may or may not be stored)."""
    _FINISHING.add(task)

    def ended(done: asyncio.Future[Any]) -> None:
        _FINISHING.discard(done)
        if not done.cancelled():
            done.exception()  # retrieved: nobody is left to report it to

    task.add_done_callback(ended)


def _publish_error(exc: Exception) -> PublishError:
    if isinstance(exc, PublishError):
        return exc
    error = PublishError(f"cannot publish: {type(exc).__name__}: {exc}")
    error.__cause__ = exc
    return error


__all__ = ["DEFAULT_BATCH", "DEFAULT_DELIVERY_TIMEOUT", "ProducerBridge", "Publish"]
