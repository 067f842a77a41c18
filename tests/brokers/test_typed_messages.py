"""Typed messages on real brokers: a handler or a bridge declares the type (dataclass,
Pydantic model, msgspec Struct) and gets instances; a payload that does not validate goes
to the DLQ with the validation error as its reason, and the consumer goes on."""

from __future__ import annotations

import dataclasses
from typing import Any, ClassVar

import msgspec
import pydantic
import pytest

from tests.brokers.helpers import TOLERANT
from tests.helpers import eventually
from troupe import Actor, ActorSystem, ConfigError
from troupe.brokers import Broker, ConsumerBridge, ProducerBridge, Publish, typed
from troupe.brokers.message import ERROR_REASON
from troupe.message_types import message_type_of
from troupe.supervisors import Backoff

OPTIONS: dict[str, Any] = {
    "retry": Backoff(initial=0.001, maximum=0.01, jitter="none"),
    "block": 0.05,
    "drain_timeout": 2.0,
}


@dataclasses.dataclass
class OrderDC:
    id: str
    qty: int


class OrderModel(pydantic.BaseModel):
    id: str
    qty: int


class OrderStruct(msgspec.Struct):
    id: str
    qty: int


class ByAnnotation(Actor):
    """Declares its type with the annotation of receive."""

    def __init__(self, seen: list[Any]) -> None:
        self.seen = seen

    def receive(self, order: OrderDC) -> None:
        self.seen.append(order)


class ByAttribute(Actor):
    """Declares its type with the class attribute."""

    message_type: ClassVar[type | None] = OrderModel

    def __init__(self, seen: list[Any]) -> None:
        self.seen = seen

    def receive(self, order: Any) -> None:
        self.seen.append(order)


class Untyped(Actor):
    def __init__(self, seen: list[Any]) -> None:
        self.seen = seen

    def receive(self, order: Any) -> None:
        self.seen.append(order)


# (the target actor, what the bridge is given, the type the handler gets)
CASES = {
    "dataclass-by-annotation": (ByAnnotation, None, OrderDC),
    "pydantic-by-attribute": (ByAttribute, None, OrderModel),
    "msgspec-by-bridge": (Untyped, OrderStruct, OrderStruct),
}


@pytest.mark.parametrize("broker_url", ["memory", "redis", "rabbitmq"], indirect=True)
@pytest.mark.parametrize("case", list(CASES))
async def test_payloads_decode_into_the_declared_type_and_invalid_ones_are_dead_lettered(
    broker: Broker, case: str
) -> None:
    target_class, bridge_type, expected = CASES[case]
    seen: list[Any] = []
    async with ActorSystem(restart=TOLERANT) as system:
        target = system.spawn(target_class, seen)
        system.spawn(
            ConsumerBridge, broker, "orders", "g", target, message_type=bridge_type, **OPTIONS
        )
        producer = system.spawn(ProducerBridge, broker, "orders")
        await producer.ask(Publish(expected(id="o1", qty=1)))  # an instance, as JSON
        await producer.ask(Publish({"id": "o2", "qty": "many"}))  # qty does not validate
        await producer.ask(Publish({"id": "o3"}))  # qty missing
        await producer.ask(Publish({"id": "o4", "qty": 4}))  # the consumer went on
        await eventually(lambda: len(seen) == 2)
        await eventually(lambda: dead_count(broker, 2))
    assert seen == [expected(id="o1", qty=1), expected(id="o4", qty=4)]
    assert all(type(order) is expected for order in seen)
    dead = await broker.dead_letters("orders")
    reasons = [d.headers[ERROR_REASON] for d in dead]
    assert all(f"does not decode as {expected.__name__}" in reason for reason in reasons)
    assert "qty" in reasons[0] and "\n" not in reasons[0]  # the validation error, one line
    assert "qty" in reasons[1]  # the missing field is named
    assert b'"many"' in dead[0].body  # the original bytes are kept


async def dead_count(broker: Broker, n: int) -> bool:
    return len(await broker.dead_letters("orders")) == n


def test_declared_types() -> None:
    assert message_type_of(ByAnnotation) is OrderDC
    assert message_type_of(ByAttribute) is OrderModel
    assert message_type_of(Untyped) is None

    class Wrong(Actor):
        message_type: ClassVar[type | None] = dict

    with pytest.raises(ConfigError, match="message_type"):
        message_type_of(Wrong)
    with pytest.raises(ConfigError, match="message_type"):
        typed(int)
