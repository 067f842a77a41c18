"""Scheduled tasks and retries run on time whatever the far-future backlog: one worker,
1,000 tasks an hour ahead, then near-due tasks and a retrying one (stub, Redis, RabbitMQ)."""

from __future__ import annotations

import itertools
import threading
import time

import dramatiq
import pytest

from tests.helpers import eventually
from troupe import ActorSystem
from troupe.brokers.tasks import Inspector, TaskClient, TaskRegistry, WorkerPool

pytestmark = pytest.mark.broker

#: Near-due tasks run at most this late (the README's figure: one delay-fetcher poll,
#: 0.1 s, then a fetch; the rest is room for a loaded machine).
LATE = 2.0


async def test_near_due_tasks_and_retries_run_on_time_behind_a_far_future_backlog(
    task_broker: dramatiq.Broker,
) -> None:
    ran: dict[str, list[float]] = {"soon": [], "flaky": [], "later": []}
    lock = threading.Lock()
    tasks = TaskRegistry()

    @tasks.task
    def later(i: int) -> None:
        with lock:
            ran["later"].append(time.time())

    @tasks.task
    def soon(i: int) -> None:
        with lock:
            ran["soon"].append(time.time())

    @tasks.task(max_retries=3, min_backoff=0.1, max_backoff=0.1)
    def flaky() -> None:
        with lock:
            ran["flaky"].append(time.time())
        raise RuntimeError("fails, to be retried in 0.1 s")

    client = TaskClient(task_broker, tasks)
    for i in range(1000):
        client.enqueue("later", i, delay=3600)
    async with ActorSystem() as system:
        pool = WorkerPool(task_broker, tasks, concurrency=1)
        await pool.start(system)
        inspector = Inspector(task_broker)
        await eventually(lambda: inspector.queues(["default"])[0].scheduled == 1000, 20)
        enqueued = time.time()
        for i in range(5):
            client.enqueue("soon", i, delay=2)
        client.enqueue("flaky")
        await eventually(lambda: len(ran["soon"]) == 5 and len(ran["flaky"]) == 4, 2 + 4 * LATE)
        await pool.stop()
    assert ran["later"] == []
    assert all(2.0 - 0.05 <= at - enqueued <= 2.0 + LATE for at in ran["soon"]), [
        at - enqueued for at in ran["soon"]
    ]
    assert ran["flaky"][0] - enqueued <= LATE
    gaps = [b - a for a, b in itertools.pairwise(ran["flaky"])]
    assert all(0.05 - 0.01 <= gap <= 0.1 + LATE for gap in gaps), gaps  # equal jitter: >= 0.05
