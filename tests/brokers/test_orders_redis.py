"""The order system and its building blocks on a real Redis (the session's redis-server)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest
from redis.asyncio import Redis

from troupe import ActorSystem
from troupe.actors.idempotency import Idempotent
from troupe.actors.saga_log import SagaFenced, SagaRecord, SagaStatus
from troupe.actors.saga_log_redis import RedisSagaLog
from troupe.brokers.redis.idempotency import RedisIdempotencyStore
from troupe.examples.orders import CreateOrder
from troupe.examples.orders.app import OrderSettings, start_orders
from troupe.examples.orders.demo import DemoOptions, render, run_demo

pytestmark = pytest.mark.broker


@pytest.fixture
async def client(redis_url: str) -> AsyncIterator[Redis]:
    redis = Redis.from_url(redis_url)
    try:
        yield redis
    finally:
        await redis.aclose()


async def test_demo_runs_on_redis(redis_url: str, client: Redis) -> None:
    options = DemoOptions(orders=120, broker=redis_url, rate=0, metrics_port=None, seed=11)
    result = await run_demo(options)
    s = result.summary
    assert result.ok, render(result, options)
    assert s["completed"] + s["compensated"] == 120
    assert s["duplicates_suppressed"] == result.submissions - result.unique > 0
    assert s["injected_crashes"] > 0 and s["restarts"] >= s["injected_crashes"]
    assert [key async for key in client.scan_iter(match="troupe:demo:*")] == []  # cleaned up


async def test_redis_saga_log_round_trip_and_index(client: Redis) -> None:
    log = RedisSagaLog(client, prefix="t:")
    record = SagaRecord("s1", "trip", {"x": 1})
    assert await log.create(record)
    assert not await log.create(SagaRecord("s1", "trip", {"x": 2}))  # exists: unchanged
    record.status = SagaStatus.COMPENSATING
    record.done = ["a"]
    record.version = 1  # a save is a compare-and-set on the version before it
    await log.save(record)
    with pytest.raises(SagaFenced):
        await log.save(record)  # version 1 is taken: nothing written
    await log.create(SagaRecord("s2", "trip"))
    loaded = await log.load("trip", "s1")
    assert loaded == record
    running = await log.records("trip", [SagaStatus.RUNNING])
    assert [r.saga_id for r in running] == ["s2"]
    unfinished = await log.records("trip", [SagaStatus.RUNNING, SagaStatus.COMPENSATING])
    assert sorted(r.saga_id for r in unfinished) == ["s1", "s2"]
    assert await log.records("other", [SagaStatus.RUNNING]) == []
    assert await log.load("trip", "missing") is None


async def test_two_processes_sharing_redis_run_a_duplicate_once(
    client: Redis, redis_url: str
) -> None:
    effects: list[str] = []

    async def effect(who: str) -> str:
        effects.append(who)
        await asyncio.sleep(0.05)
        return who

    # two guards = two processes with their own clients, one Redis
    other = Redis.from_url(redis_url)
    try:
        first = Idempotent(RedisIdempotencyStore(client), lease=5)
        second = Idempotent(RedisIdempotencyStore(other), lease=5)
        results = await asyncio.gather(
            first.run("order-9", effect, "first"), second.run("order-9", effect, "second")
        )
        assert len(effects) == 1 and results == [effects[0], effects[0]]
        assert first.stats.executed + second.stats.executed == 1
        assert first.stats.suppressed + second.stats.suppressed == 1
    finally:
        await other.aclose()


class DyingRedisLog(RedisSagaLog):
    """The orchestrator's process dies after ``budget`` saga-log writes."""

    def __init__(self, client: Redis, prefix: str, budget: int) -> None:
        super().__init__(client, prefix=prefix)
        self.budget = budget
        self.died = asyncio.Event()

    async def create(self, record: SagaRecord) -> bool:
        self._spend()
        return await super().create(record)

    async def save(self, record: SagaRecord) -> None:
        self._spend()
        await super().save(record)

    def _spend(self) -> None:
        if self.budget <= 0:
            self.died.set()
            raise ConnectionError("process died")
        self.budget -= 1


@pytest.mark.parametrize("crash_after", [0, 1, 3, 5])
async def test_a_new_process_resumes_the_saga_from_redis(
    redis_url: str, client: Redis, crash_after: int
) -> None:
    """Process one dies mid-saga (after ``crash_after`` log writes); process two, on the
    same Redis, resumes it: the order completes, each effect happened once."""
    first_app = None
    world = OrderSettings(
        broker_url=redis_url, namespace="t:resume:", idempotency_lease=1.0, saga_lease=0.5
    )
    order = CreateOrder("o-1", "ada", {"book": 2}, 3000)
    dying = DyingRedisLog(client, "t:resume:saga:", crash_after)
    async with ActorSystem("first", shutdown_timeout=0.2) as system:
        first_app = await start_orders(system, OrderSettings(**{**vars(world), "saga_log": dying}))
        assert (await first_app.submit(order))["status"] == "accepted"
        await asyncio.wait_for(dying.died.wait(), timeout=10)
        await system.shutdown(timeout=0)
    await first_app.close()
    services = {
        "inventory": first_app.inventory,
        "payments": first_app.payments,
        "mailer": first_app.mailer,
    }
    async with ActorSystem("second") as system:
        app = await start_orders(system, OrderSettings(**{**vars(world), **services}))
        for _ in range(1000):
            record = await app.saga_log.load("order", "o-1")
            if record is not None and record.status.finished:
                break
            await asyncio.sleep(0.01)
        assert record is not None and record.status is SagaStatus.COMPLETED
        # resumed from the log, or (crash before the saga existed) started from the
        # OrderPlaced event that Redis redelivered
        assert app.saga_stats.resumed + app.saga_stats.started == 1
        assert app.payments.history == [("charge", "o-1")]
        assert app.inventory.history == [("reserve", "o-1")]
        assert app.mailer.history == [("mail", "o-1")]
        assert app.payments.balanced() and app.inventory.balanced()
        assert (await app.submit(order))["status"] == "accepted"  # a late retry: stored answer
        assert app.guard.stats.executed == 0
    await app.close()
