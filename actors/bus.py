"""``EventBus``: publish events by topic to subscriber actors.

The bus is a routing table, not a bottleneck: ``publish`` puts the event
straight into the mailbox of every subscriber whose pattern matches (each
subscriber at most once per event). A subscriber with a retry policy gets its
events through a courier actor of its own that asks it, retries failures with
backoff and keeps that subscriber's events in order.

>>> import asyncio
>>> from troupe import Actor, ActorSystem
>>> class Printer(Actor):
...     def receive(self, event):
...         return f"{self.headers['troupe-topic']}: {event}"
>>> async def main():
...     async with ActorSystem() as system:
...         bus = EventBus(system)
...         bus.subscribe(system.spawn(Printer), "orders.#")
...         return await bus.publish("hello", topic="orders.placed", wait=True)
>>> asyncio.run(main())
1

``publish(..., wait=True)`` returns once every handler finished and raises an
``ExceptionGroup`` holding every failure (each noted with its subscriber);
without ``wait`` it only waits for mailbox room (backpressure).
"""

from __future__ import annotations

import asyncio
import itertools
import logging
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from troupe.actor import Actor
from troupe.errors import ActorStopped
from troupe.mailbox import Accepted
from troupe.ref import SYSTEM_TIMEOUT, ActorRef

from .retry import Retry
from .topics import TopicPattern, pattern_name, topic_of

if TYPE_CHECKING:
    from troupe.cell import Terminated
    from troupe.system import ActorSystem

logger = logging.getLogger(__name__)

TOPIC_HEADER = "troupe-topic"
WAIT_HEADER = "troupe-bus-wait"  #: set on events a publisher waits for (bridges only)


@dataclass
class _Subscriber:
    ref: ActorRef
    patterns: list[TopicPattern] = field(default_factory=list)
    retry: Retry | None = None
    courier: ActorRef | None = None
    bridge: bool = False


@dataclass(frozen=True, slots=True)
class _Delivery:
    event: Any
    headers: dict[str, str] | None
    timeout: float | None
    asked: bool = False


@dataclass(frozen=True, slots=True)
class _Failed:
    error: BaseException


@dataclass
class BusStats:
    """Counters of one bus."""

    published: int = 0
    deliveries: int = 0
    unrouted: int = 0
    failed: int = 0
    retried: int = 0


class EventBus:
    """Topic-routed publish/subscribe between actors of one system.

    ``subscribe(ref, *patterns, retry=)`` adds patterns for an actor (exact
    topics, ``*``/``#`` wildcards, or event classes); a subscriber that stops is
    removed. ``publish`` returns how many subscribers the event went to.
    Use a bus on its system's event loop (from actors, or the loop's own code).
    """

    def __init__(self, system: ActorSystem, *, name: str = "bus") -> None:
        self.system = system
        self.name = name
        self.stats = BusStats()
        self._subscribers: dict[ActorRef, _Subscriber] = {}
        self._bridges: dict[ActorRef, _Subscriber] = {}
        self._ids = itertools.count(1)
        self._routes: dict[tuple[str, bool], list[_Subscriber]] = {}

    # -- subscriptions ------------------------------------------------------------------

    def subscribe(self, ref: ActorRef, *patterns: str | type, retry: Retry | None = None) -> None:
        """Deliver events whose topic matches any of ``patterns`` to ``ref``.

        With ``retry``, a failing handler is retried with the policy's backoff
        (the subscriber's events then go through a courier, in order).
        """
        if not patterns:
            raise ValueError("subscribe needs at least one pattern; use '#' for every topic")
        entry = self._subscribers.get(ref)
        if entry is None:
            if not ref.is_alive:
                raise ActorStopped(ref.name)
            entry = self._subscribers[ref] = _Subscriber(ref)
            self.system.watch(ref, self._subscriber_stopped)
        known = {p.text for p in entry.patterns}
        for pattern in patterns:
            text = pattern_name(pattern)
            if text not in known:
                entry.patterns.append(TopicPattern(text))
                known.add(text)
        if retry is not None and retry != entry.retry:
            self._stop_courier(entry)
            entry.retry = retry
            entry.courier = self.system.spawn(
                _Courier,
                ref,
                retry,
                self.stats,
                name=f"{self.name}.courier.{ref.name}.{next(self._ids)}",
                metrics_label=f"{self.name}.courier.{ref.name}",  # not one label per resubscribe
            )
        self._routes.clear()

    def unsubscribe(self, ref: ActorRef, *patterns: str | type) -> None:
        """Remove ``patterns`` of ``ref`` (all of them when none are given)."""
        entry = self._subscribers.get(ref)
        if entry is None:
            return
        if patterns:
            drop = {pattern_name(p) for p in patterns}
            entry.patterns = [p for p in entry.patterns if p.text not in drop]
        if not patterns or not entry.patterns:
            del self._subscribers[ref]
            self._stop_courier(entry)
        self._routes.clear()

    def bridge(self, ref: ActorRef, *patterns: str | type) -> None:
        """Send events matching ``patterns`` to ``ref`` *instead of* local subscribers.

        Used by :class:`~troupe.actors.bus_bridge.BusBridge`: such events travel
        through a broker and come back to the local subscribers of every process
        with ``publish(..., local=True)``. The route holds while the bridge
        restarts (events wait in its mailbox) and ends when it stops.
        """
        if ref not in self._bridges:
            self.system.watch(ref, self._bridge_stopped)
        self._bridges[ref] = _Subscriber(
            ref, [TopicPattern(pattern_name(p)) for p in patterns], bridge=True
        )
        self._routes.clear()

    def unbridge(self, ref: ActorRef) -> None:
        """Stop routing events to the bridge ``ref``."""
        self._bridges.pop(ref, None)
        self._routes.clear()

    def subscribers(self, topic: str) -> list[ActorRef]:
        """The local actors an event with ``topic`` goes to."""
        return [entry.ref for entry in self._route(topic, True)]

    def _route(self, topic: str, local: bool) -> list[_Subscriber]:
        route = self._routes.get((topic, local))
        if route is None:
            route = []
            if not local:
                route = [e for e in self._bridges.values() if _matches(e, topic)]
            if not route:
                route = [e for e in self._subscribers.values() if _matches(e, topic)]
            if len(self._routes) > 10_000:
                self._routes.clear()
            self._routes[(topic, local)] = route
        return route

    def _subscriber_stopped(self, notice: Terminated) -> None:
        self.unsubscribe(notice.ref)

    def _bridge_stopped(self, notice: Terminated) -> None:
        self.unbridge(notice.ref)

    def _stop_courier(self, entry: _Subscriber) -> None:
        if entry.courier is not None and entry.courier.is_alive:
            entry.courier.stop()
        entry.courier = None

    # -- publishing ---------------------------------------------------------------------

    async def publish(
        self,
        event: Any,
        *,
        topic: str | None = None,
        wait: bool = False,
        timeout: float | None = SYSTEM_TIMEOUT,
        headers: dict[str, str] | None = None,
        local: bool = False,
    ) -> int:
        """Send ``event`` to every matching subscriber; return how many there were.

        ``wait=False`` (fire-and-forget) returns once every subscriber's mailbox
        took the event. ``wait=True`` returns once every handler finished
        (after its retries) and raises an ``ExceptionGroup`` of all failures.
        ``timeout`` bounds each handler (default: the system's ask timeout).
        A topic that is bridged to a broker goes to the bridge only, unless
        ``local`` (what bridges use to deliver what they consume).
        A ``topic`` given here reaches handlers in the ``troupe-topic`` header
        (:func:`event_topic` reads it, or derives the topic from the event).
        """
        meta = _meta(topic, headers)
        topic = topic or topic_of(event)
        route = self._route(topic, local)
        self.stats.published += 1
        if not route:
            self.stats.unrouted += 1
            return 0
        if timeout is SYSTEM_TIMEOUT:
            timeout = self.system.ask_timeout
        self.stats.deliveries += len(route)
        if not wait:
            for entry in route:
                pending = self._tell(entry, event, meta, timeout)
                if not pending.done():
                    await pending
            return len(route)
        results = await asyncio.gather(
            *(self._ask(entry, event, meta, timeout) for entry in route),
            return_exceptions=True,
        )
        errors: list[Exception] = []
        for entry, result in zip(route, results, strict=True):
            if isinstance(result, _Failed):
                result = result.error
            if isinstance(result, BaseException):
                if not isinstance(result, Exception):
                    raise result
                result.add_note(f"event {topic!r} failed in subscriber {entry.ref.name!r}")
                errors.append(result)
                if entry.courier is None:
                    self.stats.failed += 1
        if errors:
            raise ExceptionGroup(
                f"{len(errors)} of {len(route)} subscribers failed on event {topic!r}", errors
            )
        return len(route)

    def emit(self, event: Any, *, topic: str | None = None) -> int:
        """Fire-and-forget publish for sync code; never waits (mailbox policies apply)."""
        meta = _meta(topic, None)
        topic = topic or topic_of(event)
        route = self._route(topic, False)
        self.stats.published += 1
        if not route:
            self.stats.unrouted += 1
            return 0
        self.stats.deliveries += len(route)
        for entry in route:
            self._tell(entry, event, meta, self.system.ask_timeout)
        return len(route)

    def _tell(
        self, entry: _Subscriber, event: Any, headers: dict[str, str] | None, timeout: float | None
    ) -> Accepted | asyncio.Future[None]:
        if entry.courier is not None:
            return entry.courier.tell(_Delivery(event, headers, timeout))
        if headers is None:  # the fast path: no envelope
            return entry.ref.tell(event)
        return entry.ref.tell(event, headers=headers)

    async def _ask(
        self, entry: _Subscriber, event: Any, headers: dict[str, str] | None, timeout: float | None
    ) -> Any:
        if entry.courier is not None:
            # the courier bounds each attempt itself; its reply waits for all retries
            return await entry.courier.ask(_Delivery(event, headers, timeout, True), timeout=None)
        if entry.bridge:  # tells the bridge to wait for the broker's confirmation
            headers = {**(headers or {}), WAIT_HEADER: "1"}
        return await entry.ref.ask(event, timeout=timeout, headers=headers)


def event_topic(headers: dict[str, str], event: Any) -> str:
    """The topic an event was published under, inside a handler: ``event_topic(self.headers,
    event)`` (the ``troupe-topic`` header when the publisher named one, else ``topic_of``)."""
    return headers.get(TOPIC_HEADER) or topic_of(event)


def _meta(topic: str | None, headers: dict[str, str] | None) -> dict[str, str] | None:
    if topic is None:
        return headers
    return {TOPIC_HEADER: topic} if headers is None else {**headers, TOPIC_HEADER: topic}


def _matches(entry: _Subscriber, topic: str) -> bool:
    return any(p.matches(topic) for p in entry.patterns)


class _Courier(Actor):
    """Delivers one subscriber's events in order, retrying failed handlers with backoff."""

    def __init__(self, target: ActorRef, retry: Retry, stats: BusStats) -> None:
        self.target = target
        self.retry = retry
        self.stats = stats

    async def receive(self, delivery: _Delivery) -> Any:
        target = self.target
        policy = self.retry
        attempt = 1
        while True:
            try:
                return await target.ask(
                    delivery.event, timeout=delivery.timeout, headers=delivery.headers
                )
            except Exception as exc:
                if not target.is_alive or not policy.should_retry(exc, attempt):
                    self.stats.failed += 1
                    logger.warning(
                        "subscriber %s failed on %s after %d attempt(s): %s: %s",
                        target.name,
                        event_topic(delivery.headers or {}, delivery.event),
                        attempt,
                        type(exc).__name__,
                        exc,
                    )
                    if not delivery.asked:
                        self.system.dead_letters.publish(
                            delivery.event, target.name, f"handler failed: {exc!r}"
                        )
                    return _Failed(exc)
                self.stats.retried += 1
                await self.system.clock.sleep(policy.delay(attempt))
                attempt += 1
