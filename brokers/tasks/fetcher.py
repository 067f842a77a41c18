"""Fetcher actors: each takes the messages of one dramatiq queue into the pool's intake.

:class:`QueueFetcher` consumes ``NAME`` and hands each message to the
:class:`~troupe.brokers.tasks.intake.Intake`; the broker's ``prefetch``
bounds what is fetched and not yet acked. :class:`DelayFetcher` consumes
``NAME.DQ`` (scheduled tasks and retries) on the stub and RabbitMQ, holding all
of it (the pool gives it an unbounded prefetch), and moves each message to
``NAME`` once its ``eta`` has passed (on Redis,
:class:`~troupe.brokers.tasks.schedule.ScheduleFetcher` does this job). Both are thread
actors (the dramatiq consumers block); a broker error fails the actor and its
supervisor restarts it with backoff. On stop, messages not yet started go
back to the broker.
"""

from __future__ import annotations

import heapq
import itertools
import logging
import threading
import time
import weakref
from typing import Any

import dramatiq
from dramatiq.broker import Consumer, MessageProxy
from dramatiq.brokers.stub import StubBroker
from dramatiq.common import current_millis

from troupe import ThreadActor

from .consumers import RedisConsumer, open_consumer
from .intake import Intake, Job
from .redis_queues import RedisQueues
from .transport import Outage, canonical, connection_errors, delay_queue

logger = logging.getLogger(__name__)

_held: weakref.WeakKeyDictionary[Any, dict[str, DelayFetcher]] = weakref.WeakKeyDictionary()
_held_lock = threading.Lock()


def held_messages(broker: dramatiq.Broker, queue: str) -> list[MessageProxy]:
    """Messages of delay queue ``queue`` that a running DelayFetcher holds until their eta."""
    with _held_lock:
        fetcher = _held.get(broker, {}).get(queue)
    return fetcher.scheduled() if fetcher is not None else []


CONNECTION_ERRORS = connection_errors()

#: How long one turn of a fetcher runs before it lets its mailbox (stop, restart) in.
TURN = 0.2
_FETCH = "fetch"


def give_back(broker: dramatiq.Broker, consumer: Consumer, proxies: list[MessageProxy]) -> None:
    """Return fetched, unstarted messages to their queue."""
    if not proxies:
        return
    if isinstance(broker, StubBroker):  # its consumer cannot requeue: enqueue a copy, ack
        for proxy in proxies:
            broker.enqueue(proxy.copy())
            consumer.ack(proxy)
        return
    consumer.requeue(proxies)


class QueueFetcher(ThreadActor):
    """Feeds one queue's messages into the intake (see the module docstring).

    Until its first poll finds the queue empty, the intake counts the queue as
    pending, not idle (workers wait for its turn; see :mod:`.intake`).
    It asks the consumer for more only while fewer than ``prefetch - workers``
    messages wait in the intake, so the consumer is never at its prefetch when
    asked (dramatiq's Redis consumer sleeps, longer each time, when it is): the
    buffer is topped up as workers take from it.
    """

    def __init__(
        self,
        broker: dramatiq.Broker,
        intake: Intake,
        queue: str,
        prefetch: int,
        poll_ms: int,
        workers: int = 1,
        redis: RedisQueues | None = None,
    ) -> None:
        self.broker = broker
        self.redis = redis
        self.intake = intake
        self.queue = queue
        self.prefetch = prefetch
        self.poll_ms = poll_ms
        self.room = max(1, prefetch - workers)
        self.consumer: Consumer | None = None
        self.outage = Outage(f"task fetcher of {queue!r}")

    def on_start(self) -> None:
        self.broker.declare_queue(self.queue)
        self.ref.tell(_FETCH)

    def receive(self, message: Any) -> None:
        intake = self.intake
        queue = self.queue
        end = time.monotonic() + TURN
        try:
            consumer = self._consumer()
            while not intake.closed and not self.system.is_closing and time.monotonic() < end:
                if queue in intake.paused:
                    time.sleep(self.poll_ms / 1000)
                    continue
                if not intake.wait_for_room(queue, self.room, self.poll_ms / 1000):
                    continue
                proxy = next(consumer)
                self.outage.recovered()
                if proxy is not None:
                    intake.put(Job(proxy, consumer, queue))
                    if isinstance(consumer, RedisConsumer):  # the rest of its batch
                        for extra in consumer.cached():
                            intake.put(Job(extra, consumer, queue))
                else:  # a poll found nothing: once its buffer is taken, the queue is idle
                    intake.mark_empty(queue)
        except CONNECTION_ERRORS as exc:  # wait and reconnect here: no restart spent on it
            intake.mark_empty(queue)  # unreachable: workers do not wait for it
            if not isinstance(self.consumer, RedisConsumer):  # it keeps no connection
                self._drop_consumer()
            time.sleep(self.outage.failed(exc))
        if not intake.closed and not self.system.is_closing:  # let a system shutdown drain
            self.ref.tell(_FETCH)

    def _consumer(self) -> Consumer:
        if self.consumer is None:
            self.consumer = open_consumer(
                self.broker, self.redis, self.queue, self.prefetch, self.poll_ms
            )
        return self.consumer

    def _drop_consumer(self) -> None:
        consumer, self.consumer = self.consumer, None
        if consumer is not None:
            try:
                consumer.close()
            except Exception:  # the connection is gone already
                logger.debug("closing the consumer of %s failed", self.queue, exc_info=True)

    def on_stop(self) -> None:
        self.intake.mark_empty(self.queue)
        try:
            for job in self.intake.drain(self.queue):  # each through the consumer it came from
                give_back(self.broker, job.consumer, [job.proxy])
            if isinstance(self.consumer, RedisConsumer):  # fetched, never handed out
                self.consumer.give_back_cached()
        except CONNECTION_ERRORS as exc:
            logger.warning(
                "%s: cannot give back unstarted tasks (%s); the broker redelivers them",
                self.outage.what,
                exc,
            )
        finally:
            self._drop_consumer()


class DelayFetcher(ThreadActor):
    """Holds ``NAME.DQ`` messages until their eta, then moves them to ``NAME``."""

    def __init__(
        self, broker: dramatiq.Broker, intake: Intake, queue: str, prefetch: int, poll_ms: int
    ) -> None:
        self.broker = broker
        self.intake = intake
        self.queue = delay_queue(queue)
        self.prefetch = prefetch
        self.poll_ms = poll_ms
        self.consumer: Consumer | None = None
        self.held: list[tuple[int, int, MessageProxy]] = []
        self._seq = itertools.count()
        self.outage = Outage(f"task delay fetcher of {queue!r}")

    def on_start(self) -> None:
        self.broker.declare_queue(canonical(self.queue))
        with _held_lock:
            _held.setdefault(self.broker, {})[self.queue] = self
        self.ref.tell(_FETCH)

    def receive(self, message: Any) -> None:
        end = time.monotonic() + TURN
        try:
            if self.consumer is None:
                self.consumer = open_consumer(
                    self.broker, None, self.queue, self.prefetch, self.poll_ms
                )
            consumer = self.consumer
            while not self.intake.closed and not self.system.is_closing and time.monotonic() < end:
                proxy = next(consumer)
                self.outage.recovered()
                if proxy is not None:
                    eta = proxy.options.get("eta")
                    eta = int(eta) if isinstance(eta, int | float) else current_millis()
                    heapq.heappush(self.held, (eta, next(self._seq), proxy))
                self._release_due(consumer)
        except CONNECTION_ERRORS as exc:  # held messages come back from the broker
            self.held = []
            lost, self.consumer = self.consumer, None
            if lost is not None:
                try:
                    lost.close()
                except Exception:
                    logger.debug("closing the consumer of %s failed", self.queue, exc_info=True)
            time.sleep(self.outage.failed(exc))
        if not self.intake.closed and not self.system.is_closing:
            self.ref.tell(_FETCH)

    def _release_due(self, consumer: Consumer) -> None:
        held = self.held
        now = current_millis()
        while held and held[0][0] <= now:
            _, _, proxy = heapq.heappop(held)
            ready = proxy.copy(queue_name=canonical(self.queue))
            ready.options.pop("eta", None)
            self.broker.enqueue(ready)
            consumer.ack(proxy)

    def scheduled(self) -> list[MessageProxy]:
        """The messages held until their eta (for the inspector of a StubBroker)."""
        return [proxy for _, _, proxy in sorted(list(self.held), key=lambda h: (h[0], h[1]))]

    def on_stop(self) -> None:
        consumer, self.consumer = self.consumer, None
        if consumer is None:
            return
        held, self.held = self.held, []
        try:
            if isinstance(self.broker, StubBroker):
                for _, _, proxy in held:  # back on the delay queue, eta unchanged
                    self.broker.queues[self.queue].put(proxy.copy().encode())
                    consumer.ack(proxy)
            else:
                consumer.requeue([proxy for _, _, proxy in held])
        finally:
            consumer.close()
