"""Seams remote actors use: ``ask``/``deliver`` with a sender, ``ConsumerBridge.unwrap``."""

from __future__ import annotations

from typing import Any

from tests.helpers import eventually
from troupe import Actor, ActorRef, ActorSystem
from troupe.brokers import ConsumerBridge, MemoryBroker


class WhoSent(Actor):
    def receive(self, message: Any) -> Any:
        return self.sender


class Tracker:
    retry = False

    def __init__(self) -> None:
        self.outcome: list[BaseException | None] = []

    def started(self) -> None:
        pass

    def finished(self, error: BaseException | None) -> None:
        self.outcome.append(error)


async def test_ask_and_deliver_carry_a_sender() -> None:
    async with ActorSystem() as system:
        who = system.spawn(WhoSent)
        other = system.spawn(WhoSent)
        assert await who.ask("hi", sender=other) == other
        assert await who.ask("hi") is None
        seen: list[Any] = []

        class Keep(Actor):
            def receive(self, message: Any) -> None:
                seen.append(self.sender)

        keep = system.spawn(Keep)
        tracker = Tracker()
        keep.deliver("hi", tracker, sender=other)
        await eventually(lambda: tracker.outcome == [None])
        assert seen == [other]


class Wrapped(ConsumerBridge):
    """Unwraps {"to": payload} before handing it over."""

    def unwrap(self, payload: Any) -> tuple[Any, ActorRef | None]:
        return payload["to"], None


async def test_a_bridge_subclass_unwraps_payloads() -> None:
    broker = MemoryBroker()
    got: list[Any] = []

    class Sink(Actor):
        def receive(self, message: Any) -> None:
            got.append(message)

    async with ActorSystem() as system:
        sink = system.spawn(Sink)
        system.spawn(Wrapped, broker, "s", "g", sink)
        await broker.publish("s", {"to": 42})
        await eventually(lambda: got == [42])
        await eventually(lambda: broker.stats.consumer("s", "g", _consumer(system)).acked == 1)


def _consumer(system: ActorSystem) -> str:
    [bridge] = [c for c in system.cells() if isinstance(c.actor, Wrapped)]
    return bridge.actor.consumer  # type: ignore[attr-defined, no-any-return]
