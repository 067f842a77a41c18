"""BusBridge: bus events travel through a broker stream to the subscribers of other buses."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import pytest

from troupe import ActorSystem
from troupe.actors.bus import EventBus
from troupe.actors.bus_bridge import BusBridge, DataclassCodec
from troupe.brokers import connect

from .helpers import Recorder, eventually


@dataclass(frozen=True)
class Shipped:
    order_id: str


CODEC = DataclassCodec([Shipped])


async def test_events_cross_to_every_group_and_split_within_a_group() -> None:
    broker = connect("memory://")
    async with ActorSystem() as system:
        # three "processes": two share group "billing", one is alone in group "audit"
        inboxes: list[list[Any]] = []
        buses = []
        for index, group in enumerate(["billing", "billing", "audit"]):
            bus = EventBus(system, name=f"bus{index}")
            seen: list[Any] = []
            inboxes.append(seen)
            bus.subscribe(system.spawn(Recorder, seen), "#")
            system.spawn(
                BusBridge,
                bus,
                broker,
                "events",
                group=group,
                codec=CODEC,
                consumer=f"c{index}",
                name=f"bridge{index}",
            )
            buses.append(bus)
        for n in range(10):
            assert await buses[0].publish(Shipped(str(n)), wait=True) == 1  # confirmed by broker
        await buses[2].publish({"note": "plain json"}, topic="notes")
        await eventually(lambda: len(inboxes[0]) + len(inboxes[1]) == 11 and len(inboxes[2]) == 11)
        billing = inboxes[0] + inboxes[1]
        assert sorted(e.order_id for e in billing if isinstance(e, Shipped)) == sorted(
            str(n) for n in range(10)
        )
        assert {"note": "plain json"} in billing
        assert inboxes[2][:10] == [Shipped(str(n)) for n in range(10)]
        assert {"note": "plain json"} in inboxes[2]


async def test_a_failing_local_subscriber_gets_the_event_redelivered() -> None:
    broker = connect("memory://")
    async with ActorSystem() as system:
        bus = EventBus(system)
        seen: list[Any] = []
        bus.subscribe(system.spawn(Recorder, seen, fail_first=2), "#")
        system.spawn(BusBridge, bus, broker, "events", group="g", codec=CODEC, consumer="c")
        await bus.publish(Shipped("1"))
        await eventually(lambda: Shipped("1") in seen, timeout=10)
        assert seen[:2] == [("failed", Shipped("1")), ("failed", Shipped("1"))]


def test_unregistered_dataclass_is_refused() -> None:
    @dataclass
    class Unknown:
        x: int

    with pytest.raises(TypeError, match="not registered"):
        CODEC.encode(Unknown(1))
    with pytest.raises(ValueError, match="unknown event type"):
        CODEC.decode({"type": "Nope", "data": {}})


async def test_events_wait_for_a_restarting_bridge_and_the_route_ends_when_it_stops() -> None:
    broker = connect("memory://")
    async with ActorSystem() as system:
        bus = EventBus(system)
        seen: list[Any] = []
        bus.subscribe(system.spawn(Recorder, seen), "#")
        bridge = system.spawn(BusBridge, bus, broker, "events", group="g", codec=CODEC)
        system.cell_of(bridge).restart(delay=0.05)  # as a supervisor would, with backoff
        await bus.publish(Shipped("during-restart"))
        assert seen == []  # not delivered around the bridge
        await eventually(lambda: seen == [Shipped("during-restart")])
        await system.stop(bridge)
        await bus.publish(Shipped("after-stop"))  # no bridge: local delivery
        await eventually(lambda: seen[-1] == Shipped("after-stop"))


async def test_an_event_the_codec_cannot_encode_fails_its_publisher_not_the_bridge() -> None:
    @dataclass
    class Unknown:
        x: int

    broker = connect("memory://")
    async with ActorSystem() as system:
        bus = EventBus(system)
        seen: list[Any] = []
        bus.subscribe(system.spawn(Recorder, seen), "#")
        bridge = system.spawn(BusBridge, bus, broker, "events", group="g", codec=CODEC)
        with pytest.raises(ExceptionGroup) as info:
            await bus.publish(Unknown(1), wait=True)
        assert "not registered" in str(info.value.exceptions[0])
        await bus.publish(Unknown(2))  # fire-and-forget: a dead letter
        await eventually(lambda: system.dead_letters.count == 1)
        assert "cannot encode" in system.dead_letters.recent[-1].reason
        await bus.publish(Shipped("fine"), wait=True)
        await eventually(lambda: seen == [Shipped("fine")])
        assert system.cell_of(bridge).restarts == 0
