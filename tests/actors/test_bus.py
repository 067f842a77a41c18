"""EventBus: topic routing, fan-out, wait-for-all with ExceptionGroup, per-subscriber retry."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from troupe import Actor, ActorSystem
from troupe.actors.bus import EventBus, event_topic
from troupe.actors.retry import Retry
from troupe.actors.topics import TopicPattern, topic_of

from .helpers import Recorder, eventually


@dataclass(frozen=True)
class OrderPlaced:
    order_id: str


class Failing(Actor):
    def __init__(self, message: str) -> None:
        self.message = message

    def receive(self, event: Any) -> None:
        raise ValueError(self.message)


class TopicRecorder(Actor):
    def __init__(self, seen: list[tuple[str, Any]]) -> None:
        self.seen = seen

    def receive(self, event: Any) -> None:
        self.seen.append((event_topic(self.headers, event), event))


def test_topic_patterns() -> None:
    assert TopicPattern("OrderPlaced").matches("OrderPlaced")
    assert not TopicPattern("OrderPlaced").matches("OrderPlacedX")
    assert TopicPattern("#").matches("a.b.c")
    assert TopicPattern("a.#").matches("a") and TopicPattern("a.#").matches("a.b.c")
    assert TopicPattern("#.c").matches("c") and TopicPattern("#.c").matches("a.b.c")
    assert TopicPattern("a.*.c").matches("a.b.c") and not TopicPattern("a.*.c").matches("a.c")
    assert TopicPattern("Payment*").matches("PaymentFailed")
    assert not TopicPattern("Payment*").matches("orders.PaymentFailed")
    assert topic_of(OrderPlaced("1")) == "OrderPlaced"
    assert topic_of({"type": "x.y"}) == "x.y"


async def test_fan_out_to_every_matching_subscriber_once() -> None:
    async with ActorSystem() as system:
        bus = EventBus(system)
        exact: list[Any] = []
        wild: list[tuple[str, Any]] = []
        other: list[Any] = []
        bus.subscribe(system.spawn(Recorder, exact), OrderPlaced)
        both = system.spawn(TopicRecorder, wild)
        bus.subscribe(both, "Order*", "#")  # two matching patterns, one delivery
        bus.subscribe(system.spawn(Recorder, other), "Payment*")
        assert await bus.publish(OrderPlaced("1")) == 2
        assert bus.emit(OrderPlaced("2")) == 2
        assert await bus.publish(OrderPlaced("3"), topic="orders.placed", wait=True) == 1
        await eventually(lambda: len(wild) == 3 and len(exact) == 2)
        assert exact == [OrderPlaced("1"), OrderPlaced("2")]
        assert wild[2] == ("orders.placed", OrderPlaced("3"))
        assert other == []
        assert bus.stats.published == 3 and bus.stats.deliveries == 5


async def test_wait_raises_an_exception_group_of_every_failure() -> None:
    async with ActorSystem() as system:
        bus = EventBus(system)
        ok: list[Any] = []
        bus.subscribe(system.spawn(Failing, "first"), "#")
        bus.subscribe(system.spawn(Recorder, ok), "#")
        bus.subscribe(system.spawn(Failing, "second"), "#")
        with pytest.raises(ExceptionGroup) as info:
            await bus.publish(OrderPlaced("1"), wait=True)
        messages = sorted(str(e) for e in info.value.exceptions)
        assert messages == ["first", "second"]
        assert ok == [OrderPlaced("1")]
        notes = [n for e in info.value.exceptions for n in getattr(e, "__notes__", [])]
        assert any("Failing" in n for n in notes)
        assert bus.stats.failed == 2


async def test_retry_policy_per_subscriber() -> None:
    async with ActorSystem() as system:
        bus = EventBus(system)
        flaky_seen: list[Any] = []
        flaky = system.spawn(Recorder, flaky_seen, fail_first=2)  # fails twice, then works
        bus.subscribe(flaky, "#", retry=Retry(max_attempts=3, initial=0.001))
        assert await bus.publish("e1", wait=True) == 1
        assert flaky_seen == [("failed", "e1"), ("failed", "e1"), "e1"]
        assert bus.stats.retried == 2
        # without retry the same failure surfaces at once
        plain = system.spawn(Recorder, [], fail_first=1)
        bus.subscribe(plain, "only-plain")
        with pytest.raises(ExceptionGroup):
            await bus.publish("e2", topic="only-plain", wait=True)


async def test_fire_and_forget_failure_after_retries_is_a_dead_letter() -> None:
    async with ActorSystem() as system:
        bus = EventBus(system)
        bus.subscribe(
            system.spawn(Failing, "always"), "#", retry=Retry(max_attempts=2, initial=0.001)
        )
        await bus.publish("lost")
        await eventually(lambda: system.dead_letters.count == 1)
        letter = system.dead_letters.recent[-1]
        assert letter.message == "lost" and "always" in letter.reason
        assert bus.stats.failed == 1


async def test_stopped_subscribers_are_removed() -> None:
    async with ActorSystem() as system:
        bus = EventBus(system)
        ref = system.spawn(Recorder, [])
        bus.subscribe(ref, "#", retry=Retry(max_attempts=2))
        assert bus.subscribers("x") == [ref]
        await system.stop(ref)
        assert bus.subscribers("x") == []
        assert await bus.publish("x") == 0 and bus.stats.unrouted == 1
        other = system.spawn(Recorder, [])
        bus.subscribe(other, "a", "b")
        bus.unsubscribe(other, "a")
        assert bus.subscribers("a") == [] and bus.subscribers("b") == [other]


TOPICS = ["OrderPlaced", "PaymentFailed", "orders.placed", "orders.payment.failed", "audit"]
PATTERNS = [*TOPICS, "#", "*", "orders.*", "orders.#", "Payment*", "#.failed", "none"]


@given(
    subscriptions=st.lists(
        st.tuples(
            st.lists(st.sampled_from(PATTERNS), min_size=1, max_size=3),
            st.integers(-1, 2),  # -1: no retry policy; else failures before it works
        ),
        min_size=1,
        max_size=5,
    ),
    events=st.lists(st.sampled_from(TOPICS), max_size=15),
    wait=st.booleans(),
)
def test_property_every_event_reaches_every_matching_subscriber(
    subscriptions: list[tuple[list[str], int]], events: list[str], wait: bool
) -> None:
    """Each event reaches every matching subscriber once, in order — also subscribers that
    fail at first and have a retry policy."""

    async def scenario() -> None:
        async with ActorSystem() as system:
            bus = EventBus(system)
            raw: list[list[Any]] = []
            for patterns, failures in subscriptions:
                seen: list[Any] = []
                raw.append(seen)
                retry = Retry(max_attempts=3, initial=0.0) if failures >= 0 else None
                ref = system.spawn(Recorder, seen, fail_first=max(failures, 0))
                bus.subscribe(ref, *patterns, retry=retry)
            for number, topic in enumerate(events):
                await bus.publish((number, topic), topic=topic, wait=wait)
            expected = [
                [
                    (n, t)
                    for n, t in enumerate(events)
                    if any(TopicPattern(p).matches(t) for p in patterns)
                ]
                for patterns, _ in subscriptions
            ]

            def inboxes() -> list[list[Any]]:
                return [[m for m in seen if not isinstance(m[0], str)] for seen in raw]

            await eventually(lambda: [len(s) for s in inboxes()] == [len(e) for e in expected])
            await asyncio.sleep(0)
            assert inboxes() == expected  # each once, in publish order

    asyncio.run(scenario())


def _reference_match(pattern: list[str], topic: list[str]) -> bool:
    """AMQP topic matching, written the obvious recursive way."""
    import fnmatch

    if not pattern:
        return not topic
    head, rest = pattern[0], pattern[1:]
    if head == "#":
        return any(_reference_match(rest, topic[i:]) for i in range(len(topic) + 1))
    if not topic:
        return False
    if head == "*":
        return _reference_match(rest, topic[1:])
    if "*" in head:
        return fnmatch.fnmatchcase(topic[0], head) and _reference_match(rest, topic[1:])
    return head == topic[0] and _reference_match(rest, topic[1:])


SEGMENTS = st.sampled_from(["a", "b", "ab", "ba"])


@given(
    pattern=st.lists(
        st.one_of(SEGMENTS, st.sampled_from(["*", "#", "a*", "*b"])), min_size=1, max_size=4
    ),
    topic=st.lists(SEGMENTS, min_size=1, max_size=5),
)
def test_property_topic_patterns_match_like_the_reference(
    pattern: list[str], topic: list[str]
) -> None:
    expected = _reference_match(pattern, topic)
    assert TopicPattern(".".join(pattern)).matches(".".join(topic)) is expected
