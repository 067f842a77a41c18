"""Registered dataclasses travel to remote actors as JSON; nothing else that is not JSON
does, and a typed value that does not validate is refused with the reason (told: DLQ)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import pytest

from tests.helpers import eventually
from troupe import Actor, ActorSystem, ConfigError
from troupe.actors import RemoteError, export, remote, wire_type
from troupe.actors.remote_node import stream_of
from troupe.actors.remote_wire import TOLD_TYPE
from troupe.actors.saga import Rejected, StepAction
from troupe.actors.wire_types import from_wire, to_wire
from troupe.brokers import MemoryBroker
from troupe.brokers.message import CONTENT_TYPE, ERROR_REASON


@wire_type(name="tests.Reserve")
@dataclass(frozen=True)
class Reserve:
    sku: str
    qty: int


@dataclass(frozen=True)
class NotRegistered:
    sku: str


class Stock(Actor):
    def __init__(self, seen: list[Any]) -> None:
        self.seen = seen

    def receive(self, message: Any) -> Any:
        if message == "unregistered reply":
            return NotRegistered("x")
        self.seen.append(message)
        if isinstance(message, StepAction):
            return Rejected(f"no {message.data['sku']}")
        return {"reserved": message, "type": type(message).__name__}


async def test_registered_types_cross_the_wire_both_ways() -> None:
    broker = MemoryBroker()
    seen: list[Any] = []
    async with ActorSystem("a") as a, ActorSystem("b") as b:
        await export(a, a.spawn(Stock, seen), "stock", via=broker)
        stock = remote(b, "stock", via=broker)
        reply = await stock.ask(Reserve("book", 2), timeout=10)
        assert reply == {"reserved": Reserve("book", 2), "type": "Reserve"}
        # the saga's step messages and replies are registered: steps may be remote
        refused = await stock.ask(StepAction("o-1", "inventory", {"sku": "desk"}), timeout=10)
        assert refused == Rejected("no desk")
        await stock.tell([Reserve("mug", 1)])
        await eventually(lambda: [Reserve("mug", 1)] in seen, timeout=10)
        with pytest.raises(TypeError, match="NotRegistered cannot travel"):
            stock.tell(NotRegistered("x"))
        with pytest.raises(TypeError, match="NotRegistered cannot travel"):
            stock.ask(NotRegistered("x"))


async def test_a_typed_value_that_does_not_validate_is_refused_with_the_reason() -> None:
    broker = MemoryBroker()
    seen: list[Any] = []
    async with ActorSystem("a") as a, ActorSystem("b") as b:
        await export(a, a.spawn(Stock, seen), "stock", via=broker)
        body = b'{"p":{"$type":"tests.Reserve","$value":{"sku":"book","qty":"two"}},"s":null}'
        await broker.publish(stream_of("stock"), body, headers={CONTENT_TYPE: TOLD_TYPE})

        async def dead_lettered() -> bool:
            return len(await broker.dead_letters(stream_of("stock"))) == 1

        await eventually(dead_lettered, timeout=10)
        [dead] = await broker.dead_letters(stream_of("stock"))
        assert "tests.Reserve" in dead.headers[ERROR_REASON]
        assert dead.body == body
        unknown = b'{"p":{"$type":"os.system","$value":{"cmd":"rm"}},"s":null}'
        await broker.publish(stream_of("stock"), unknown, headers={CONTENT_TYPE: TOLD_TYPE})

        async def both() -> bool:
            return len(await broker.dead_letters(stream_of("stock"))) == 2

        await eventually(both, timeout=10)
        reasons = [d.headers[ERROR_REASON] for d in await broker.dead_letters(stream_of("stock"))]
        assert any("unknown wire type 'os.system'" in r for r in reasons), reasons
        assert seen == []
        # a reply that cannot travel comes back as an error saying so
        with pytest.raises(RemoteError, match="NotRegistered cannot travel"):
            await remote(b, "stock", via=broker).ask("unregistered reply", timeout=10)


def test_documents_and_registration_errors() -> None:
    assert to_wire(Reserve("a", 1)) == {"$type": "tests.Reserve", "$value": {"sku": "a", "qty": 1}}
    with pytest.raises(ValueError, match="does not validate"):
        from_wire({"$type": "tests.Reserve", "$value": {"sku": "a"}})
    with pytest.raises(ValueError, match="unknown wire type"):
        from_wire({"$type": "nope", "$value": {}})
    with pytest.raises(TypeError, match="not a registered wire type"):
        to_wire(NotRegistered("a"))

    @dataclass
    class Other:
        x: int

    with pytest.raises(ConfigError, match="'name'"):
        wire_type(Other, name="tests.Reserve")
    with pytest.raises(ConfigError, match="'wire_type'"):
        wire_type(int)
