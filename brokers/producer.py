"""``ProducerBridge``: an actor that publishes to a broker in batches, with retries.

Send it payloads (published to its default stream) or :class:`Publish` messages.
Every message waiting in its mailbox when it runs joins one batch (one round
trip). A failed batch is retried with the shared Backoff; after ``max_attempts``
the failure goes back to whoever asked (``await ref.ask(...)`` raises
:class:`~troupe.brokers.PublishError`) and is counted in ``stats.failed`` for
messages that were told. A successful ``ask`` returns the message id.
A lost connection that outlasts the retries also fails the bridge itself, so
its supervisor restarts it (the broker's reconnect backoff applies).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from troupe.actor import Actor
from troupe.backoff import Backoff
from troupe.envelope import Envelope
from troupe.errors import require_at_least

from .base import Broker, BrokerConnectionError, BrokerError, ProducerStats, PublishError
from .message import TRACEPARENT, Message, Serializer

logger = logging.getLogger(__name__)

DEFAULT_PUBLISH_RETRY = Backoff(initial=0.05, maximum=2.0, multiplier=2.0, jitter="equal")


@dataclass(frozen=True, slots=True)
class Publish:
    """A message for a ProducerBridge: a payload and where/how to publish it."""

    payload: Any
    stream: str | None = None  # the bridge's default stream when None
    key: str | None = None
    headers: Mapping[str, str] = field(default_factory=dict)
    delay: float | None = None
    at: float | None = None


class ProducerBridge(Actor):
    """Publish what it receives to ``stream`` on ``broker``, batched, retried.

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
        batch: int = 100,
        max_attempts: int = 5,
        retry: Backoff = DEFAULT_PUBLISH_RETRY,
    ) -> None:
        require_at_least("batch", batch, 1)
        require_at_least("max_attempts", max_attempts, 1)
        self.broker = broker
        self.stream = stream
        self.serializer = serializer
        self.batch = batch
        self.max_attempts = max_attempts
        self.retry = retry
        self.stats: ProducerStats = broker.stats.producer(self.name)

    async def receive(self, message: Any) -> Any:
        batch: list[tuple[Any, dict[str, str], Envelope | None]] = [(message, self.headers, None)]
        mailbox = self.system.cell_of(self.ref).mailbox
        while len(batch) < self.batch and len(mailbox):
            item = mailbox.pop()
            if type(item) is Envelope:
                batch.append((item.message, item.headers or {}, item))
            else:
                batch.append((item, {}, None))
        outcomes = await self._publish(batch)
        for (_, _, envelope), outcome in zip(batch[1:], outcomes[1:], strict=True):
            reply = envelope.reply if envelope is not None else None
            if reply is not None and not reply.done():
                if isinstance(outcome, BaseException):
                    reply.set_exception(outcome)
                else:
                    reply.set_result(outcome)
        first = outcomes[0]
        if isinstance(first, BrokerConnectionError):
            raise first  # the connection is gone: fail, let the supervisor restart us
        if isinstance(first, BaseException):
            if not self._asked():
                return None  # told, not asked: counted in stats.failed
            raise first
        return first

    def _asked(self) -> bool:
        current = self.system.cell_of(self.ref)._current
        return current is not None and current.reply is not None

    async def _publish(
        self, batch: list[tuple[Any, dict[str, str], Envelope | None]]
    ) -> list[str | BaseException]:
        """Publish each stream's messages in one call; one outcome per input, in order."""
        outcomes: list[str | BaseException] = [PublishError("not published")] * len(batch)
        groups: dict[tuple[str, float | None, float | None], list[tuple[int, Message]]] = {}
        for index, (item, headers, _) in enumerate(batch):
            try:
                spec = item if isinstance(item, Publish) else Publish(item)
                stream = spec.stream or self.stream
                if stream is None:
                    raise PublishError(
                        "no stream: send Publish(payload, stream=...) or give the bridge a stream"
                    )
                all_headers = dict(spec.headers)
                if TRACEPARENT in headers and TRACEPARENT not in all_headers:
                    all_headers[TRACEPARENT] = headers[TRACEPARENT]
                msg = self.broker.message(
                    spec.payload, key=spec.key, headers=all_headers, serializer=self.serializer
                )
            except Exception as exc:
                self.stats.failed += 1
                outcomes[index] = exc if isinstance(exc, PublishError) else PublishError(str(exc))
                continue
            groups.setdefault((stream, spec.delay, spec.at), []).append((index, msg))
        for (stream, delay, at), members in groups.items():
            error = await self._send(stream, [m for _, m in members], delay, at)
            for index, msg in members:
                outcomes[index] = msg.id if error is None else error
            if error is None:
                self.stats.published += len(members)
            else:
                self.stats.failed += len(members)
        return outcomes

    async def _send(
        self, stream: str, messages: list[Message], delay: float | None, at: float | None
    ) -> BaseException | None:
        clock = self.system.clock
        for attempt in range(self.max_attempts):
            try:
                await self.broker.publish_messages(stream, messages, delay=delay, at=at)
            except BrokerError as exc:
                if attempt + 1 >= self.max_attempts:
                    logger.error(
                        "publishing %d messages to %s failed after %d attempts: %s",
                        len(messages),
                        stream,
                        self.max_attempts,
                        exc,
                    )
                    if isinstance(exc, BrokerConnectionError):
                        return exc
                    return PublishError(f"publish to {stream!r} failed: {exc}")
                self.stats.retries += 1
                await clock.sleep(self.retry.delay(attempt))
            else:
                self.stats.batches += 1
                return None
        return PublishError("unreachable")


__all__ = ["ProducerBridge", "Publish"]
