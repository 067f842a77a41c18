"""Wiring the order system: ledgers, bus, steps, saga orchestrator, intake.

>>> import asyncio
>>> from troupe import ActorSystem
>>> async def main():
...     async with ActorSystem() as system:
...         app = await start_orders(system, OrderSettings())
...         reply = await app.submit(CreateOrder("o-1", "ada", {"book": 1}, 1500))
...         await app.settled(1)
...         return reply["status"], app.summary()["completed"]
>>> asyncio.run(main())
('accepted', 1)
"""

from __future__ import annotations

import asyncio
import logging
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from troupe.actors.bus import EventBus
from troupe.actors.idempotency import Idempotent
from troupe.actors.retry import Retry
from troupe.actors.saga import SagaOrchestrator, SagaStats
from troupe.actors.saga_log import MemorySagaLog, SagaLog
from troupe.brokers.idempotency import IdempotencyStore, MemoryIdempotencyStore
from troupe.ref import ActorRef
from troupe.system import ActorSystem

from .events import CreateOrder, OrderPlaced
from .ledgers import Inventory, Mailer, Payments
from .service import COUNTER, FLOW, SAGA, SERVICE, EventCounter, OrderFlow, OrderService
from .steps import (
    CONFIRMATION,
    INVENTORY,
    PAYMENT,
    ChargePayment,
    Faults,
    ReserveInventory,
    SendConfirmation,
    order_saga,
)

logger = logging.getLogger(__name__)

DEFAULT_STOCK = {"book": 500, "lamp": 200, "mug": 800, "desk": 50}


@dataclass
class OrderSettings:
    """What the order system runs on and with."""

    stock: dict[str, int] = field(default_factory=lambda: dict(DEFAULT_STOCK))
    balances: dict[str, int] = field(default_factory=lambda: {"ada": 10**9})
    faults: Faults = field(default_factory=Faults)
    saga_log: SagaLog | None = None
    idempotency: IdempotencyStore | None = None
    step_timeout: float = 2.0
    step_retry: Retry | None = None


@dataclass
class OrderApp:
    """A running order system: its actors, its ledgers and its counters."""

    system: ActorSystem
    bus: EventBus
    service: ActorRef
    orchestrator: ActorRef
    inventory: Inventory
    payments: Payments
    mailer: Mailer
    faults: Faults
    guard: Idempotent
    saga_stats: SagaStats
    saga_log: SagaLog
    events: Counter[str]

    async def submit(self, order: CreateOrder, timeout: float | None = 10.0) -> dict[str, Any]:
        """Place an order (safe to repeat with the same order id)."""
        reply: dict[str, Any] = await self.service.ask(order, timeout=timeout)
        return reply

    def finished(self) -> int:
        """Sagas that completed, were compensated, or need attention."""
        stats = self.saga_stats
        return stats.completed + stats.compensated + stats.needs_attention

    async def settled(self, sagas: int, timeout: float = 30.0) -> None:
        """Wait until ``sagas`` sagas have finished and their events were counted."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while self.finished() < sagas or not self._events_flushed():
            if loop.time() > deadline:
                raise TimeoutError(
                    f"only {self.finished()} of {sagas} order sagas finished in {timeout} s"
                )
            await asyncio.sleep(0.005)

    def _events_flushed(self) -> bool:
        ended = self.events["OrderConfirmed"] + self.events["OrderCancelled"]
        return ended >= self.saga_stats.completed + self.saga_stats.compensated

    def summary(self) -> dict[str, int]:
        """The numbers the demo prints."""
        stats = self.saga_stats
        return {
            "placed": self.events["OrderPlaced"],
            "completed": stats.completed,
            "compensated": stats.compensated,
            "needs_attention": stats.needs_attention,
            "payment_failed": self.events["PaymentFailed"],
            "duplicates_suppressed": self.guard.stats.suppressed + stats.duplicates,
            "restarts": self.system.restarts,
            "dead_letters": self.system.dead_letters.count,
            "step_retries": stats.action_retries,
            "compensation_retries": stats.compensation_retries,
            "injected_crashes": self.faults.crashes,
            "resumed": stats.resumed,
        }


async def start_orders(system: ActorSystem, settings: OrderSettings) -> OrderApp:
    """Start the order system's actors in ``system`` and return a handle on them."""
    inventory = Inventory(settings.stock)
    payments = Payments(settings.balances)
    mailer = Mailer()
    bus = EventBus(system, name="orders.bus")
    events: Counter[str] = Counter()
    saga_stats = SagaStats()
    saga_log: SagaLog = settings.saga_log if settings.saga_log is not None else MemorySagaLog()
    guard = Idempotent(
        settings.idempotency or MemoryIdempotencyStore(),
        namespace="orders:create:",
        sleep=system.clock.sleep,
    )
    system.spawn(ReserveInventory, inventory, settings.faults, name=INVENTORY)
    system.spawn(ChargePayment, payments, name=PAYMENT)
    system.spawn(SendConfirmation, mailer, name=CONFIRMATION)
    flow = system.spawn(OrderFlow, bus, SAGA, name=FLOW)
    orchestrator = system.spawn(
        SagaOrchestrator,
        order_saga(settings.step_timeout, settings.step_retry),
        saga_log,
        listener=flow,
        stats=saga_stats,
        name=SAGA,
    )
    counter = system.spawn(EventCounter, events, name=COUNTER)
    bus.subscribe(flow, OrderPlaced, retry=Retry(max_attempts=5, initial=0.01))
    bus.subscribe(counter, "#")
    service = system.spawn(OrderService, guard, bus, name=SERVICE)
    return OrderApp(
        system=system,
        bus=bus,
        service=service,
        orchestrator=orchestrator,
        inventory=inventory,
        payments=payments,
        mailer=mailer,
        faults=settings.faults,
        guard=guard,
        saga_stats=saga_stats,
        saga_log=saga_log,
        events=events,
    )
