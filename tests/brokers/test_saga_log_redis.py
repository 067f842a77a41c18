"""The Redis saga log: the same ownership semantics as the memory log, checked by the
same state machine (a shorter run), plus the Lua scripts' edge cases."""

from __future__ import annotations

import asyncio

import redis
import redis.asyncio as aioredis
from hypothesis import settings
from hypothesis.stateful import run_state_machine_as_test

from troupe.actors.saga_log import SagaFenced, SagaRecord, SagaStatus
from troupe.actors.saga_log_redis import RedisSagaLog

from ..actors.test_saga_log_properties import SagaLogMachine


def test_redis_saga_log_state_machine(redis_url: str) -> None:
    class RedisSagaLogMachine(SagaLogMachine):
        """Leases run on Redis's clock: long here, and ended by ``lease_expires``."""

        lease = 60.0

        def __init__(self) -> None:
            redis.Redis.from_url(redis_url).flushdb()
            self.client = aioredis.Redis.from_url(redis_url)
            super().__init__(RedisSagaLog(self.client), lambda: 0.0, self.client.aclose)

    run_state_machine_as_test(
        RedisSagaLogMachine, settings=settings(max_examples=15, stateful_step_count=25)
    )


async def test_owner_leases_expire_on_the_redis_clock(redis_url: str) -> None:
    client = aioredis.Redis.from_url(redis_url)
    log = RedisSagaLog(client)
    try:
        await log.renew("A", 0.05)
        await log.renew("B", 5)
        record = SagaRecord("s1", "trip", owner="A", fence=1)
        assert await log.create(record)
        assert await log.take_over(record, "B") is None  # A's lease is live
        assert await log.live(["A", "B", "C"]) == {"A", "B"}
        await asyncio.sleep(0.1)
        assert await log.live(["A", "B"]) == {"B"}
        taken = await log.take_over(record, "B")
        assert taken is not None and (taken.owner, taken.fence, taken.version) == ("B", 2, 1)
        record.step, record.version = 1, 1
        try:
            await log.save(record)  # A wakes up and writes: refused
            raise AssertionError("a stale owner's save went through")
        except SagaFenced as exc:
            assert exc.saga_id == "s1" and exc.owner == "A"
        stored = await log.load("trip", "s1")
        assert stored == taken
        taken.status, taken.outcome_pending, taken.version = SagaStatus.COMPLETED, True, 2
        await log.save(taken)
        assert [r.saga_id for r in await log.outbox("trip")] == ["s1"]
        assert await log.records("trip", [SagaStatus.RUNNING]) == []
    finally:
        await client.aclose()
