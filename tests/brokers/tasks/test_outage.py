"""A Redis outage: fetchers, workers and the watcher wait and reconnect in place (no
restarts spent), and the pool goes on once the server is back."""

from __future__ import annotations

import asyncio
import logging

import pytest

from tests.helpers import eventually
from troupe import ActorSystem, Child
from troupe.brokers.servers import RedisServer
from troupe.brokers.tasks import TaskClient, TaskRegistry, WorkerPool, open_broker

pytestmark = pytest.mark.broker


async def test_the_pool_rides_out_a_redis_outage(
    redis_server: RedisServer, redis_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    ran: list[int] = []
    tasks = TaskRegistry()

    @tasks.task
    def note(n: int) -> None:
        ran.append(n)

    broker = open_broker(redis_url)
    client = TaskClient(broker, tasks)
    async with ActorSystem() as system:
        pool = WorkerPool(broker, tasks, concurrency=2, poll_interval=0.05)
        ref = await pool.start(system)
        for n in range(5):
            client.enqueue("note", n)
        await eventually(lambda: len(ran) == 5, 10)
        with caplog.at_level(logging.WARNING, logger="troupe.brokers.tasks"):
            await asyncio.to_thread(redis_server.stop)
            await asyncio.sleep(1.0)
            await asyncio.to_thread(redis_server.start)
        for n in range(5, 10):
            await asyncio.to_thread(client.enqueue, "note", n)
        await eventually(lambda: sorted(set(ran)) == list(range(10)), 20)
        assert Child.of(ref).state.name == "RUNNING"
        assert system.restarts == 0  # reconnected in place
        assert any("broker unreachable" in r.getMessage() for r in caplog.records)
        await pool.stop()
    broker.close()
