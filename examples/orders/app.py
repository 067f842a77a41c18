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
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from troupe.actors.bus import EventBus
from troupe.actors.bus_bridge import BusBridge, DataclassCodec
from troupe.actors.idempotency import Idempotent
from troupe.actors.retry import Retry
from troupe.actors.saga import SagaOrchestrator, SagaStats
from troupe.actors.saga_log import MemorySagaLog, SagaLog
from troupe.brokers import Broker, connect
from troupe.brokers.idempotency import IdempotencyStore, MemoryIdempotencyStore
from troupe.ref import ActorRef
from troupe.supervisors import Backoff, ChildSpec, Strategy, SupervisorSpec, start_supervisor
from troupe.system import ActorSystem

from .events import EVENT_TYPES, CreateOrder
from .ledgers import Inventory, Mailer, Payments
from .service import (
    BRIDGE,
    COUNTER,
    FLOW,
    SAGA,
    SERVICE,
    EventCounter,
    OrderFlow,
    OrderService,
    RecentIds,
)
from .steps import Faults, order_saga, steps_spec

logger = logging.getLogger(__name__)

ROOT = "orders"
DEFAULT_STOCK = {"book": 500, "lamp": 200, "mug": 800, "desk": 50}


@dataclass
class OrderSettings:
    """What the order system runs on and with.

    ``broker_url`` picks the broker the order events travel through
    (``memory://`` embedded, ``redis://host:port/db``); with Redis, the saga log
    and the idempotency keys live in Redis too, under ``namespace``. Passing
    ``inventory``/``payments``/``mailer`` reuses the "external services" (tests
    restart the system around the same ones), and so does passing ``broker``,
    ``saga_log`` or ``idempotency`` (the app then does not close them).
    """

    broker_url: str = "memory://"
    namespace: str = "troupe:orders:"
    stock: dict[str, int] = field(default_factory=lambda: dict(DEFAULT_STOCK))
    balances: dict[str, int] = field(default_factory=lambda: {"ada": 10**9})
    faults: Faults = field(default_factory=Faults)
    saga_log: SagaLog | None = None
    idempotency: IdempotencyStore | None = None
    inventory: Inventory | None = None
    payments: Payments | None = None
    mailer: Mailer | None = None
    broker: Broker | None = None
    idempotency_lease: float = 5.0  # renewed while the effect runs; a dead holder blocks this long
    saga_lease: float = 10.0  # a crashed process's sagas are taken over after this
    step_timeout: float = 2.0
    step_retry: Retry | None = None
    #: refs to step actors served elsewhere, by step name (inventory, payment, confirmation):
    #: remote refs when the steps run in another process tree; the app then spawns none
    steps: dict[str, Any] | None = None


@dataclass
class OrderApp:
    """A running order system: its actors, its ledgers and its counters."""

    system: ActorSystem
    root: ActorRef
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
    outcomes: Counter[str]
    broker: Broker
    closers: list[Callable[[], Awaitable[Any]]] = field(default_factory=list)

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
            if not self.root.is_alive:
                raise RuntimeError("the order system's supervisor gave up (see the log)")
            if loop.time() > deadline:
                raise TimeoutError(
                    f"only {self.finished()} of {sagas} order sagas finished in {timeout} s"
                )
            await asyncio.sleep(0.005)

    def _events_flushed(self) -> bool:
        ended = self.events["OrderConfirmed"] + self.events["OrderCancelled"]
        return ended >= self.saga_stats.completed + self.saga_stats.compensated

    async def close(self) -> None:
        """Close the connections the app opened (call after the system shut down)."""
        for close in reversed(self.closers):
            await close()
        self.closers.clear()

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
    # "is None", not "or": stores and logs with __len__ are falsy while empty
    inventory = settings.inventory if settings.inventory is not None else Inventory(settings.stock)
    payments = settings.payments if settings.payments is not None else Payments(settings.balances)
    mailer = settings.mailer if settings.mailer is not None else Mailer()
    closers: list[Callable[[], Awaitable[Any]]] = []
    broker = settings.broker
    if broker is None:
        broker = connect(settings.broker_url)
        closers.append(broker.close)
    saga_log, store = settings.saga_log, settings.idempotency
    if settings.broker_url.startswith(("redis://", "rediss://")) and (
        saga_log is None or store is None
    ):
        saga_log, store, close = _redis_state(settings, saga_log, store)
        closers.append(close)
    bus = EventBus(system, name="orders.bus")
    events: Counter[str] = Counter()
    outcomes: Counter[str] = Counter()
    saga_stats = SagaStats()
    saga_log = saga_log if saga_log is not None else MemorySagaLog()
    guard = Idempotent(
        store if store is not None else MemoryIdempotencyStore(),
        namespace=f"{settings.namespace}create:",
        lease=settings.idempotency_lease,
        sleep=system.clock.sleep,
    )
    # the step actors here, or served by another tree (settings.steps: remote refs)
    steps = [] if settings.steps else [steps_spec(inventory, payments, mailer, settings.faults)]
    bridge_options = {
        "group": "orders",
        "consumer": "orders-1",
        "codec": DataclassCodec(EVENT_TYPES.values()),
    }
    tree = SupervisorSpec(
        [
            *steps,
            ChildSpec(EventCounter, (events, bus), name=COUNTER),
            ChildSpec(
                OrderFlow,
                (bus, SAGA, outcomes),
                # outcomes are re-sent until handled: published once per saga id
                {"seen": RecentIds()},
                name=FLOW,
            ),
            ChildSpec(
                SagaOrchestrator,
                (order_saga(settings.step_timeout, settings.step_retry, settings.steps), saga_log),
                {"listener": FLOW, "stats": saga_stats, "lease": settings.saga_lease},
                name=SAGA,
            ),
            ChildSpec(
                BusBridge, (bus, broker, f"{settings.namespace}events"), bridge_options, name=BRIDGE
            ),
            ChildSpec(OrderService, (guard, bus), name=SERVICE),
        ],
        name=ROOT,
        strategy=Strategy.ONE_FOR_ONE,
        max_restarts=10,
        within=5.0,
        backoff=Backoff(initial=0.01, maximum=1.0, jitter="equal"),
    )
    root = await start_supervisor(system, tree)
    return OrderApp(
        system=system,
        bus=bus,
        root=root,
        service=system.lookup(SERVICE),
        orchestrator=system.lookup(SAGA),
        inventory=inventory,
        payments=payments,
        mailer=mailer,
        faults=settings.faults,
        guard=guard,
        saga_stats=saga_stats,
        saga_log=saga_log,
        events=events,
        outcomes=outcomes,
        broker=broker,
        closers=closers,
    )


def _redis_state(
    settings: OrderSettings, saga_log: SagaLog | None, store: IdempotencyStore | None
) -> tuple[SagaLog, IdempotencyStore, Callable[[], Awaitable[Any]]]:
    """The saga log and idempotency store on the broker's Redis."""
    from redis.asyncio import Redis

    from troupe.actors.saga_log_redis import RedisSagaLog
    from troupe.brokers.redis.idempotency import RedisIdempotencyStore

    client = Redis.from_url(settings.broker_url)
    log = (
        saga_log
        if saga_log is not None
        else RedisSagaLog(client, prefix=f"{settings.namespace}saga:")
    )
    idem = (
        store
        if store is not None
        else RedisIdempotencyStore(client, prefix=f"{settings.namespace}idem:")
    )
    return log, idem, client.aclose
