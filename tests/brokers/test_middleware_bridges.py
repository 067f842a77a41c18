"""Middleware on bridges: publish, deliver, skip, hold (a rate limit), retry and dead-letter
hooks, on real brokers."""

from __future__ import annotations

import time
from typing import Any

import pytest

from tests.brokers.helpers import TOLERANT
from tests.helpers import eventually
from troupe import Actor, ActorSystem, Middleware, SkipMessage
from troupe.brokers import Broker, ConsumerBridge, Delivery, ProducerBridge, Publish
from troupe.brokers.message import ERROR_REASON
from troupe.supervisors import Backoff

FAST_RETRY = Backoff(initial=0.001, maximum=0.01, jitter="none")
OPTIONS: dict[str, Any] = {"retry": FAST_RETRY, "block": 0.05, "drain_timeout": 2.0}

pytestmark = pytest.mark.parametrize("broker_url", ["memory", "redis"], indirect=True)


class Recorder(Actor):
    def __init__(self, seen: list[Any]) -> None:
        self.seen = seen

    def receive(self, message: Any) -> None:
        if message.get("fail"):
            raise RuntimeError(f"refused {message['n']}")
        self.seen.append((message["n"], self.headers.get("x-audit")))


class Events(Middleware):
    """Records every bridge hook; skips n == 3; holds n == 4 once for ``hold`` seconds."""

    def __init__(self, hold: float = 0.3) -> None:
        self.events: list[tuple[Any, ...]] = []
        self.hold = hold
        self.held_at: float | None = None
        self.delivered_at: dict[int, float] = {}

    def before_publish(
        self, bridge: Actor, stream: str, payload: Any, headers: dict[str, str]
    ) -> None:
        headers["x-audit"] = f"published-by-{bridge.name}"
        self.events.append(("before_publish", stream, payload["n"]))

    def after_publish(
        self,
        bridge: Actor,
        stream: str,
        message_id: str | None,
        headers: dict[str, str],
        error: BaseException | None,
    ) -> None:
        self.events.append(("after_publish", stream, message_id is not None, error))

    def before_deliver(
        self, bridge: Actor, delivery: Any, payload: Any, headers: dict[str, str]
    ) -> float | None:
        n = payload["n"]
        if n == 3:
            raise SkipMessage("three is skipped")
        if n == 4 and self.held_at is None:
            self.held_at = time.monotonic()
            return self.hold
        self.delivered_at.setdefault(n, time.monotonic())
        return None

    def after_deliver(
        self,
        bridge: Actor,
        delivery: Any,
        payload: Any,
        headers: dict[str, str],
        error: BaseException | None,
    ) -> None:
        assert isinstance(delivery, Delivery)
        self.events.append(("after_deliver", payload["n"], type(error).__name__))

    def after_skip(self, bridge: Actor, delivery: Any, reason: SkipMessage) -> None:
        self.events.append(("after_skip", str(reason)))

    def after_retry(self, bridge: Actor, delivery: Any, error: BaseException, delay: float) -> None:
        self.events.append(("after_retry", str(error), delay >= 0))

    def after_dead_letter(self, bridge: Actor, delivery: Any, reason: str) -> None:
        self.events.append(("after_dead_letter", "refused 5" in reason))


async def test_bridge_hooks_see_publish_deliver_skip_hold_retry_and_dead_letter(
    broker: Broker,
) -> None:
    events = Events()
    seen: list[Any] = []
    async with ActorSystem(restart=TOLERANT) as system:
        target = system.spawn(Recorder, seen)
        producer = system.spawn(ProducerBridge, broker, "s", middleware=[events])
        system.spawn(
            ConsumerBridge,
            broker,
            "s",
            "g",
            target,
            max_deliveries=2,
            **OPTIONS,
            middleware=[events],
        )
        for n in range(6):
            assert await producer.ask(Publish({"n": n, "fail": n == 5}))
        await eventually(lambda: len(seen) == 4)
        await eventually(lambda: ("after_dead_letter", True) in events.events)
    assert sorted(seen) == [(n, "published-by-" + producer.name) for n in (0, 1, 2, 4)]
    published = [e for e in events.events if e[0] == "after_publish"]
    assert published == [("after_publish", "s", True, None)] * 6
    assert ("after_skip", "three is skipped") in events.events
    delivered = sorted(
        e[1] for e in events.events if e[0] == "after_deliver" and e[2] == "NoneType"
    )
    assert delivered == [0, 1, 2, 4]  # 3 was skipped: no handler ran for it
    assert events.events.count(("after_deliver", 5, "RuntimeError")) == 2
    assert events.events.count(("after_retry", "refused 5", True)) == 1
    assert events.held_at is not None
    assert events.delivered_at[4] - events.held_at >= events.hold * 0.9  # held, then delivered
    [dead] = await broker.dead_letters("s")
    assert "refused 5" in dead.headers[ERROR_REASON]
    assert await broker.dead_letters("s") == [dead]  # the skipped 3 was acked, not dead-lettered
    assert await broker.pending("s", "g") == 0


class RateLimit(Middleware):
    """A token bucket on a consumer bridge: at most ``rate`` deliveries per second."""

    def __init__(self, rate: float) -> None:
        self.interval = 1.0 / rate
        self.next_free = 0.0

    def before_deliver(
        self, bridge: Actor, delivery: Any, payload: Any, headers: dict[str, str]
    ) -> float | None:
        now = time.monotonic()
        if now < self.next_free:
            return self.next_free - now  # hold it back until its slot
        self.next_free = max(now, self.next_free) + self.interval
        return None


async def test_a_rate_limit_middleware_spaces_deliveries(broker: Broker) -> None:
    seen: list[Any] = []
    arrivals: list[float] = []

    class Stamp(Actor):
        def receive(self, message: Any) -> None:
            arrivals.append(time.monotonic())
            seen.append(message)

    async with ActorSystem(restart=TOLERANT) as system:
        target = system.spawn(Stamp)
        system.spawn(
            ConsumerBridge, broker, "s", "g", target, **OPTIONS, middleware=[RateLimit(20)]
        )
        for n in range(6):
            await broker.publish("s", n)
        await eventually(lambda: len(seen) == 6)
    assert sorted(seen) == list(range(6))
    assert arrivals[-1] - arrivals[0] >= 5 * 0.05 * 0.9  # 20/s: 6 messages span >= 0.25 s
    assert await broker.dead_letters("s") == []
