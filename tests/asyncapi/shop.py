"""A system whose bridges tests/asyncapi/test_asyncapi.py documents (also via the CLI)."""

from __future__ import annotations

import dataclasses
import os
from typing import Any

import msgspec
import pydantic

from troupe import Actor, ActorSystem
from troupe.brokers import ConsumerBridge, ProducerBridge, connect


@dataclasses.dataclass
class Item:
    sku: str
    qty: int


@dataclasses.dataclass
class Order:
    """An order placed in the shop."""

    id: str
    items: list[Item]
    express: bool = False


class Payment(pydantic.BaseModel):
    order_id: str
    amount: float


class Shipment(msgspec.Struct):
    order_id: str
    carrier: str


class Orders(Actor):
    def receive(self, order: Order) -> None: ...


class Payments(Actor):
    message_type = Payment

    def receive(self, payment: Any) -> None: ...


class Shipping(Actor):
    def receive(self, shipment: Any) -> None: ...


def build(system: ActorSystem) -> None:
    """Orders and payments on one broker (Redis when $SHOP_BROKER says so), shipments too."""
    broker = connect(os.environ.get("SHOP_BROKER", "memory://"))
    system.spawn(Orders, name="orders")
    system.spawn(Payments, name="payments")
    system.spawn(Shipping, name="shipping")
    system.spawn(ConsumerBridge, broker, "orders", "billing", "orders", block=0.05)
    system.spawn(ConsumerBridge, broker, "payments", "ledger", "payments", block=0.05)
    system.spawn(
        ConsumerBridge, broker, "shipments", "dispatch", "shipping", message_type=Shipment,
        block=0.05,
    )  # fmt: skip
    system.spawn(ProducerBridge, broker, "orders", name="checkout")
    system.spawn(ProducerBridge, broker, "audit", name="auditor")
