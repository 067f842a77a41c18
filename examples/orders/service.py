"""Order intake and the glue between the bus and the saga.

- :class:`OrderService` takes ``CreateOrder`` commands, idempotent by order id
  (a duplicate submission gets the first answer and places nothing), and
  publishes ``OrderPlaced``.
- :class:`OrderFlow` starts the order saga on ``OrderPlaced`` and turns the
  saga's outcome into ``PaymentCompleted``/``PaymentFailed`` and
  ``OrderConfirmed``/``OrderCancelled`` events, once per saga id: the saga log
  delivers outcomes at least once (re-sent after a resume), so the flow drops an
  outcome it has seen (a bounded :class:`RecentIds`) and, given an ``Idempotent``
  guard, one another process already published.
- :class:`EventCounter` counts every event on the bus (a ``#`` subscriber).
"""

from __future__ import annotations

import logging
from collections import Counter, OrderedDict
from typing import Any

from troupe.actor import Actor
from troupe.actors.bus import EventBus, event_topic
from troupe.actors.idempotency import Idempotent
from troupe.actors.retry import Retry
from troupe.actors.saga import SagaFinished, StartSaga
from troupe.actors.saga_log import SagaStatus

from .events import (
    CreateOrder,
    OrderCancelled,
    OrderConfirmed,
    OrderPlaced,
    PaymentCompleted,
    PaymentFailed,
)

logger = logging.getLogger(__name__)

SERVICE = "orders.service"
FLOW = "orders.flow"
SAGA = "orders.saga"
COUNTER = "orders.events"
BRIDGE = "orders.bridge"


class OrderService(Actor):
    """Accepts orders once per order id and announces them on the bus."""

    def __init__(self, guard: Idempotent, bus: EventBus) -> None:
        self.guard = guard
        self.bus = bus

    async def receive(self, command: CreateOrder) -> dict[str, Any]:
        if not isinstance(command, CreateOrder):
            raise TypeError(f"order service expects CreateOrder, got {command!r}")
        reply: dict[str, Any] = await self.guard.run(command.order_id, self._place, command)
        return reply

    async def _place(self, command: CreateOrder) -> dict[str, Any]:
        problem = _invalid(command)
        if problem is not None:
            return {"order_id": command.order_id, "status": "rejected", "reason": problem}
        # wait=True: with the bus bridged to a broker, this returns once the broker has
        # the event, so an accepted order is never lost (the saga starts from the broker)
        await self.bus.publish(
            OrderPlaced(command.order_id, command.customer, dict(command.items), command.amount),
            wait=True,
        )
        return {"order_id": command.order_id, "status": "accepted"}


def _invalid(command: CreateOrder) -> str | None:
    if command.amount <= 0:
        return f"amount must be positive, got {command.amount}"
    if not command.items or any(qty <= 0 for qty in command.items.values()):
        return "an order needs items with positive quantities"
    return None


class RecentIds:
    """The last ``size`` ids seen (oldest forgotten first): bounded memory for dedupe."""

    def __init__(self, size: int = 10_000) -> None:
        if size < 1:
            raise ValueError(f"RecentIds size must be at least 1, got {size!r}")
        self.size = size
        self._ids: OrderedDict[str, None] = OrderedDict()

    def add(self, key: str) -> bool:
        """Remember ``key``; False when it was already remembered."""
        if key in self._ids:
            self._ids.move_to_end(key)
            return False
        self._ids[key] = None
        if len(self._ids) > self.size:
            self._ids.popitem(last=False)
        return True

    def forget(self, key: str) -> None:
        """Drop ``key`` (its handling failed, so a redelivery may try again)."""
        self._ids.pop(key, None)

    def __len__(self) -> int:
        return len(self._ids)


class OrderFlow(Actor):
    """Starts a saga per placed order; publishes the outcome of each once per saga id.

    ``seen`` (caller-owned, so it outlives a restart of the flow) drops outcomes
    already published in this process; ``guard`` (an ``Idempotent`` on a shared
    store, keyed by saga id: give it a namespace of its own) drops those published
    before a crash or by another process. ``outcomes`` counts the outcomes published.
    """

    def __init__(
        self,
        bus: EventBus,
        saga_name: str = SAGA,
        outcomes: Counter[str] | None = None,
        *,
        seen: RecentIds | None = None,
        guard: Idempotent | None = None,
    ) -> None:
        self.bus = bus
        self.saga_name = saga_name
        self.outcomes: Counter[str] = outcomes if outcomes is not None else Counter()
        self.seen = seen if seen is not None else RecentIds()
        self.guard = guard

    def on_start(self) -> None:
        # subscribing here keeps the subscription when a supervisor starts a new instance
        self.bus.subscribe(self.ref, OrderPlaced, retry=Retry(max_attempts=5, initial=0.01))

    async def receive(self, message: Any) -> None:
        if isinstance(message, OrderPlaced):
            data = {"customer": message.customer, "items": message.items, "amount": message.amount}
            # ask: the event is acked only once the saga is in the saga log
            await self.system.lookup(self.saga_name).ask(StartSaga(message.order_id, data))
        elif isinstance(message, SagaFinished):
            await self._outcome(message)

    async def _outcome(self, done: SagaFinished) -> None:
        if not self.seen.add(done.saga_id):
            logger.debug("outcome of saga %s already published", done.saga_id)
            return
        try:
            if self.guard is not None:
                await self.guard.run(done.saga_id, self._publish, done)
            else:
                await self._publish(done)
        except BaseException:
            self.seen.forget(done.saga_id)  # not published: a redelivery may try again
            raise

    async def _publish(self, done: SagaFinished) -> None:
        order_id = done.saga_id
        self.outcomes[f"{done.status.value}:{done.failed_step or '-'}"] += 1
        if done.status is SagaStatus.COMPLETED:
            await self.bus.publish(PaymentCompleted(order_id, int(done.data["amount"])))
            await self.bus.publish(OrderConfirmed(order_id))
        elif done.status is SagaStatus.COMPENSATED:
            if done.failed_step == "payment":
                await self.bus.publish(PaymentFailed(order_id, done.error or "declined"))
            await self.bus.publish(OrderCancelled(order_id, done.failed_step, done.error))
        else:
            logger.error("order %s needs attention: %s", order_id, done.error)


class EventCounter(Actor):
    """Counts events by topic into a Counter owned by the caller (survives restarts)."""

    def __init__(self, counts: Counter[str], bus: EventBus) -> None:
        self.counts = counts
        self.bus = bus

    def on_start(self) -> None:
        self.bus.subscribe(self.ref, "#")

    def receive(self, event: Any) -> None:
        self.counts[event_topic(self.headers, event)] += 1
