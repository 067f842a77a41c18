"""The tree the observer tests run with ``troupe run`` (in real child processes).

``build`` starts a supervisor with two workers and a consumer bridge on the
memory broker; one message, "poison", fails the first time it is handled, so it
is dead-lettered (``max_deliveries=1``) and a requeue from the DLQ then succeeds.
"""

from __future__ import annotations

from typing import Any

import troupe.actors  # noqa: F401  (the observer's saga section)
from troupe import Actor, ActorRef, ActorSystem
from troupe.brokers import ConsumerBridge, MemoryBroker
from troupe.supervisors import ChildSpec, SupervisorSpec


class Worker(Actor):
    def receive(self, message: Any) -> Any:
        return message


class Orders(Actor):
    """Fails "poison" the first time only; counts what it handled."""

    def __init__(self) -> None:
        self.seen: set[str] = set()

    def receive(self, message: Any) -> Any:
        if message == "poison" and "poison" not in self.seen:
            self.seen.add("poison")
            raise ValueError("poison pill")
        return message


SEEN: set[str] = set()


class OnceOrders(Orders):
    """Remembers across restarts (a failure restarts the actor) in the module."""

    def __init__(self) -> None:
        self.seen = SEEN


async def build(system: ActorSystem) -> ActorRef:
    spec = SupervisorSpec(
        [ChildSpec(Worker, name="worker-a"), ChildSpec(Worker, name="worker-b")], name="workers"
    )
    root = spec.spawn(system)
    broker = MemoryBroker()
    orders = system.spawn(OnceOrders, name="orders")
    system.spawn(
        ConsumerBridge, broker, "orders", "shop", orders, name="orders-bridge", max_deliveries=1
    )
    await broker.publish("orders", "poison")
    await broker.publish("orders", "fine")
    return root
