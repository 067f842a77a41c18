"""The order system: each order's effects happen once; sagas survive the orchestrator's death."""

from __future__ import annotations

import asyncio
from collections.abc import Collection, Iterable
from typing import Any

from hypothesis import given
from hypothesis import strategies as st

from troupe import ActorSystem
from troupe.actors.saga_log import MemorySagaLog, SagaRecord, SagaStatus
from troupe.brokers import connect
from troupe.brokers.faults import SimulatedBroker
from troupe.brokers.idempotency import MemoryIdempotencyStore
from troupe.examples.orders import CreateOrder, Inventory, Mailer, Payments
from troupe.examples.orders.app import OrderApp, OrderSettings, start_orders
from troupe.examples.orders.steps import Faults
from troupe.testing import Simulation, seeds, simulate

PRICE = 1000
CUSTOMERS = {"rich": 10**9, "poor": 1500}  # poor can pay for one item, once


def make_order(n: int, customer: str, qty: int) -> CreateOrder:
    return CreateOrder(f"o{n}", customer, {"widget": qty}, qty * PRICE)


def check_each_order(
    app_or_world: Any, orders: Iterable[CreateOrder], outcome: dict[str, SagaStatus]
) -> None:
    """Every order either fully happened (reserved, charged, mailed) or not at all; each
    effect at most once; stock and money balance."""
    inventory: Inventory = app_or_world.inventory
    payments: Payments = app_or_world.payments
    mailer: Mailer = app_or_world.mailer
    for history in (inventory.history, payments.history, mailer.history):
        assert len(history) == len(set(history)), f"an effect happened twice: {history}"
    assert inventory.balanced() and payments.balanced()
    for order in orders:
        status = outcome[order.order_id]
        held = order.order_id in inventory.reservations
        charged = order.order_id in payments.charges
        mailed = order.order_id in mailer.sent
        if status is SagaStatus.COMPLETED:
            assert held and charged and mailed, order
        else:
            assert status is SagaStatus.COMPENSATED, (order, status)
            assert not held and not charged and not mailed, order


async def outcomes(app: OrderApp, orders: Iterable[CreateOrder]) -> dict[str, SagaStatus]:
    found: dict[str, SagaStatus] = {}
    for order in orders:
        record = await app.saga_log.load("order", order.order_id)
        assert record is not None, f"no saga for accepted order {order.order_id}"
        found[order.order_id] = record.status
    return found


ORDER_LISTS = st.lists(
    st.tuples(st.sampled_from(sorted(CUSTOMERS)), st.integers(1, 3), st.integers(0, 3)),
    min_size=1,
    max_size=6,
)


@given(
    orders=ORDER_LISTS,
    crash_every=st.sampled_from([0, 2, 3]),
    stock=st.integers(2, 12),
    seed=seeds(),
)
def test_property_duplicates_and_failures_never_repeat_an_effect(
    orders: list[tuple[str, int, int]], crash_every: int, stock: int, seed: int
) -> None:
    """Any interleaving of duplicate submissions (concurrent and late), inventory crashes,
    declines and stock-outs: each order's effects happen once (or not at all). Runs in a
    troupe.testing simulation: the seed orders the submissions and every actor turn."""
    commands = [make_order(n, customer, qty) for n, (customer, qty, _) in enumerate(orders)]
    submissions = [
        c for c, (_, _, dups) in zip(commands, orders, strict=True) for _ in range(1 + dups)
    ]

    async def scenario(sim: Simulation[None]) -> None:
        sim.rng.shuffle(submissions)
        settings = OrderSettings(
            stock={"widget": stock},
            balances=dict(CUSTOMERS),
            faults=Faults(inventory_crash_every=crash_every),
            broker=SimulatedBroker(),
        )
        async with ActorSystem() as system:
            app = await start_orders(system, settings)
            replies = await asyncio.gather(*(app.submit(c) for c in submissions))
            assert all(r["status"] == "accepted" for r in replies)
            await app.settled(len(commands), timeout=20)
            assert app.saga_stats.started == len(commands)
            assert app.events["OrderPlaced"] == len(commands)
            assert app.guard.stats.executed == len(commands)
            assert app.summary()["duplicates_suppressed"] >= len(submissions) - len(commands)
            check_each_order(app, commands, await outcomes(app, commands))
            assert app.system.restarts >= app.faults.crashes
        await app.close()

    simulate(scenario, seed=seed)


class ProcessDied(BaseException):
    """The orchestrator's process died at this point (nothing after it is written)."""


class DyingLog(MemorySagaLog):
    """A saga log whose writer dies after ``budget`` writes; the records written stay."""

    def __init__(self, durable: MemorySagaLog, budget: int) -> None:
        super().__init__()
        self.durable = durable
        self.budget = budget
        self.died = asyncio.Event()

    async def create(self, record: SagaRecord) -> bool:
        self._spend()
        return await self.durable.create(record)

    async def save(self, record: SagaRecord) -> None:
        self._spend()
        await self.durable.save(record)

    async def load(self, saga: str, saga_id: str) -> SagaRecord | None:
        if self.died.is_set():
            raise ConnectionError("process is dead")
        return await self.durable.load(saga, saga_id)

    async def records(self, saga: str, statuses: Iterable[SagaStatus]) -> list[SagaRecord]:
        return await self.durable.records(saga, statuses)

    async def outbox(self, saga: str) -> list[SagaRecord]:
        return await self.durable.outbox(saga)

    async def take_over(self, record: SagaRecord, owner: str) -> SagaRecord | None:
        self._spend()
        return await self.durable.take_over(record, owner)

    async def renew(self, owner: str, lease: float) -> None:
        await self.durable.renew(owner, lease)

    async def release(self, owner: str) -> None:
        await self.durable.release(owner)

    async def live(self, owners: Collection[str]) -> set[str]:
        return await self.durable.live(owners)

    def _spend(self) -> None:
        if self.budget <= 0:
            self.died.set()
            raise ConnectionError("process died before this write")
        self.budget -= 1


@given(
    orders=ORDER_LISTS,
    crash_at=st.integers(0, 40),
    crash_every=st.sampled_from([0, 3]),
)
def test_property_any_orchestrator_crash_point_ends_completed_or_compensated(
    orders: list[tuple[str, int, int]], crash_at: int, crash_every: int
) -> None:
    """The process running the saga dies after any number of saga-log writes; a new
    process (same broker, saga log, idempotency store and services) resumes. Every
    accepted order's saga ends completed or fully compensated; stock and money balance."""
    commands = [make_order(n, customer, qty) for n, (customer, qty, _) in enumerate(orders)]
    world = OrderSettings(
        stock={"widget": 8},
        balances=dict(CUSTOMERS),
        faults=Faults(inventory_crash_every=crash_every),
        inventory=Inventory({"widget": 8}),
        payments=Payments(dict(CUSTOMERS)),
        mailer=Mailer(),
        broker=connect("memory://"),
        idempotency=MemoryIdempotencyStore(),
        idempotency_lease=0.5,
        saga_lease=0.5,
    )
    durable = MemorySagaLog()

    async def first_process() -> None:
        log = DyingLog(durable, crash_at)
        async with ActorSystem("first", shutdown_timeout=0.2) as system:
            settings = OrderSettings(**{**vars(world), "saga_log": log})
            app = await start_orders(system, settings)
            submitting = asyncio.gather(
                *(app.submit(c, timeout=2) for c in commands), return_exceptions=True
            )
            died = asyncio.create_task(log.died.wait())
            settled = asyncio.create_task(app.settled(len(commands), timeout=20))
            await asyncio.wait([died, settled], return_when=asyncio.FIRST_COMPLETED)
            died.cancel()
            settled.cancel()
            await asyncio.gather(died, settled, return_exceptions=True)
            await system.shutdown(timeout=0)  # the process is gone
            submitting.cancel()
            await asyncio.gather(submitting, return_exceptions=True)

    async def second_process() -> None:
        async with ActorSystem("second") as system:
            settings = OrderSettings(**{**vars(world), "saga_log": durable})
            app = await start_orders(system, settings)
            # clients retry every order they sent: accepted ones are duplicates now
            replies = await asyncio.gather(*(app.submit(c) for c in commands))
            assert all(r["status"] == "accepted" for r in replies)
            loop = asyncio.get_running_loop()
            deadline = loop.time() + 20
            while True:
                records = [await durable.load("order", c.order_id) for c in commands]
                if all(r is not None and r.status.finished for r in records):
                    break
                assert loop.time() < deadline, records
                await asyncio.sleep(0.01)
            check_each_order(world, commands, {r.saga_id: r.status for r in records if r})
            # the second process shared the first one's idempotency keys: one per order
            assert world.idempotency is not None and len(world.idempotency) == len(commands)

    asyncio.run(first_process())
    asyncio.run(second_process())
