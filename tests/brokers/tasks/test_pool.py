"""Worker pools on the stub and on Redis: run, retry with backoff then dead-letter, time
limits, schedule, uniqueness, task ids, supervision."""

from __future__ import annotations

import asyncio
import itertools
import time
from typing import Any

import dramatiq
import pytest

from tests.helpers import eventually
from troupe import ActorSystem, Backoff, Child
from troupe.brokers.tasks import (
    DuplicateTask,
    Inspector,
    TaskClient,
    TaskIdConflict,
    TaskRegistry,
    WorkerPool,
    current_task,
)

pytestmark = pytest.mark.broker


class Log:
    """What the tasks did: (name, args, monotonic time)."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, tuple[Any, ...], float]] = []

    def add(self, name: str, *args: Any) -> None:
        self.calls.append((name, args, time.monotonic()))

    def of(self, name: str) -> list[tuple[Any, ...]]:
        return [a for n, a, _ in self.calls if n == name]

    def times(self, name: str) -> list[float]:
        return [t for n, _, t in self.calls if n == name]


def make_tasks(log: Log) -> TaskRegistry:
    tasks = TaskRegistry()

    @tasks.task
    def add(a: int, b: int) -> int:
        log.add("add", a, b)
        return a + b

    @tasks.task(max_retries=2, min_backoff=0.2, max_backoff=0.2)
    def flaky(key: str) -> None:
        log.add("flaky", key)
        raise ValueError(f"flaky {key} fails")

    @tasks.task(max_retries=0, time_limit=0.2)
    async def slow_async(seconds: float) -> None:
        log.add("slow_async_start", seconds)
        await asyncio.sleep(seconds)
        log.add("slow_async_end", seconds)

    @tasks.task(max_retries=0, time_limit=0.05)
    def slow_sync(seconds: float) -> None:
        time.sleep(seconds)
        log.add("slow_sync_end", seconds)

    @tasks.task
    def whoami() -> None:
        ctx = current_task()
        assert ctx is not None
        log.add("whoami", ctx.id, ctx.queue)

    return tasks


async def test_tasks_run_with_their_arguments(task_broker: dramatiq.Broker) -> None:
    log = Log()
    tasks = make_tasks(log)
    client = TaskClient(task_broker, tasks)
    async with ActorSystem() as system:
        pool = WorkerPool(task_broker, tasks, concurrency=3)
        await pool.start(system)
        for i in range(20):
            client.enqueue("add", i, 1)
        info = client.enqueue("whoami", task_id="task-42")
        await eventually(lambda: len(log.of("add")) == 20 and log.of("whoami"), 20)
        assert sorted(log.of("add")) == [(i, 1) for i in range(20)]
        assert log.of("whoami") == [("task-42", "default")] and info.id == "task-42"
        await eventually(lambda: pool.stats.total("add", "default", "done") == 20)
        await pool.stop()


async def test_retries_with_backoff_then_dead_letter(task_broker: dramatiq.Broker) -> None:
    log = Log()
    tasks = make_tasks(log)
    client = TaskClient(task_broker, tasks)
    inspector = Inspector(task_broker)
    async with ActorSystem() as system:
        pool = WorkerPool(task_broker, tasks, concurrency=2)
        await pool.start(system)
        info = client.enqueue("flaky", "k1")
        await eventually(lambda: inspector.queues(["default"])[0].dead == 1, 20)
        times = log.times("flaky")
        assert len(times) == 3  # the first attempt and max_retries=2 retries
        gaps = [b - a for a, b in itertools.pairwise(times)]
        assert all(gap >= 0.1 for gap in gaps), gaps  # Backoff(0.2, jitter=equal) >= 0.1 s
        [dead] = inspector.dead("default")
        assert dead.id == info.id and dead.task == "flaky" and dead.args == ["k1"]
        assert dead.error is not None and "flaky k1 fails" in dead.error
        assert pool.stats.total("flaky", "default", "retried") == 2
        assert pool.stats.total("flaky", "default", "dead") == 1
        # requeue it from the dead-letter queue: it runs again, three more attempts
        assert inspector.requeue_dead("default", info.id)
        await eventually(lambda: len(log.times("flaky")) == 6, 20)
        await eventually(lambda: inspector.queues(["default"])[0].dead == 1, 20)
        assert inspector.delete_dead("default", info.id)
        assert inspector.dead("default") == []
        assert not inspector.delete_dead("default", info.id)
        await pool.stop()


async def test_time_limit_interrupts_async_and_reports_sync(task_broker: dramatiq.Broker) -> None:
    log = Log()
    tasks = make_tasks(log)
    client = TaskClient(task_broker, tasks)
    inspector = Inspector(task_broker)
    async with ActorSystem() as system:
        pool = WorkerPool(task_broker, tasks, concurrency=2)
        await pool.start(system)
        client.enqueue("slow_async", 5.0)
        client.enqueue("slow_sync", 0.15)
        await eventually(lambda: pool.stats.total("slow_async", "default", "dead") == 1, 10)
        assert log.of("slow_async_start") == [(5.0,)] and log.of("slow_async_end") == []
        await eventually(lambda: len(inspector.dead("default")) == 1, 10)  # AMQP: acks are async
        [dead] = inspector.dead("default")
        assert dead.error is not None and "TimeLimitExceeded" in dead.error
        # a sync handler cannot be interrupted: it finishes, and is reported as overran
        await eventually(lambda: pool.stats.total("slow_sync", "default", "overran") == 1, 10)
        assert log.of("slow_sync_end") == [(0.15,)]
        await pool.stop()


async def test_scheduled_tasks_do_not_run_before_their_time(task_broker: dramatiq.Broker) -> None:
    log = Log()
    tasks = make_tasks(log)
    client = TaskClient(task_broker, tasks)
    inspector = Inspector(task_broker)
    async with ActorSystem() as system:
        pool = WorkerPool(task_broker, tasks, concurrency=2)
        await pool.start(system)
        start = time.monotonic()
        client.enqueue("add", 1, 0, delay=0.6)
        client.enqueue("add", 2, 0, process_at=time.time() + 0.3)
        client.enqueue("add", 3, 0)
        await eventually(lambda: inspector.queues(["default"])[0].scheduled == 2, 5)
        assert {r.args[0] for r in inspector.scheduled("default")} == {1, 2}
        await eventually(lambda: len(log.of("add")) == 3, 10)
        when = {a[0]: t - start for (n, a, t) in log.calls if n == "add"}
        assert when[2] >= 0.29 and when[1] >= 0.59, when  # never before their time
        order = [a[0] for a in log.of("add")]
        assert order.index(2) < order.index(1), order  # due earlier, run earlier
        await pool.stop()


async def test_unique_for_deduplicates_for_its_window(task_broker: dramatiq.Broker) -> None:
    log = Log()
    tasks = make_tasks(log)
    client = TaskClient(task_broker, tasks)
    client.enqueue("add", 1, 1, unique_for=30)
    with pytest.raises(DuplicateTask):
        client.enqueue("add", 1, 1, unique_for=30)
    client.enqueue("add", 1, 2, unique_for=30)  # another payload is another task
    client.enqueue("add", 1, 1, unique_for=30, queue="other")  # another queue too
    # a lock that expires frees the payload
    client.enqueue("add", 5, 5, unique_for=0.05)
    await asyncio.sleep(0.1)
    client.enqueue("add", 5, 5, unique_for=0.05)
    # release on failure: a dead-lettered unique task frees its payload, the default keeps it
    client.enqueue("flaky", "kept", unique_for=30, max_retries=0)
    client.enqueue("flaky", "freed", unique_for=30, max_retries=0, release_unique_on_failure=True)
    # a cancelled unique task frees its payload
    cancelled = client.enqueue("add", 7, 7, unique_for=30)
    client.cancel(cancelled.id)
    with pytest.raises(TaskIdConflict):
        client.enqueue("add", 0, 0, task_id="same")
        client.enqueue("add", 0, 0, task_id="same")
    async with ActorSystem() as system:
        pool = WorkerPool(task_broker, tasks, queues=["default", "other"], concurrency=2)
        await pool.start(system)
        await eventually(lambda: len(log.of("add")) == 6 and len(log.of("flaky")) == 2, 10)
        await eventually(lambda: pool.stats.total("flaky", "default", "dead") == 2, 10)
        await eventually(lambda: pool.stats.total("add", "default", "cancelled") == 1, 10)
        # success keeps the lock for the whole window
        with pytest.raises(DuplicateTask):
            client.enqueue("add", 1, 1, unique_for=30)
        with pytest.raises(DuplicateTask):
            client.enqueue("flaky", "kept", unique_for=30)
        client.enqueue("flaky", "freed", unique_for=30)  # released when it dead-lettered
        client.enqueue("add", 7, 7, unique_for=30)  # released when it was cancelled
        await pool.stop()


async def test_a_crashed_worker_is_restarted_by_its_supervisor(
    task_broker: dramatiq.Broker,
) -> None:
    log = Log()
    tasks = make_tasks(log)
    client = TaskClient(task_broker, tasks)
    async with ActorSystem() as system:
        pool = WorkerPool(task_broker, tasks, concurrency=2, backoff=Backoff.none())
        ref = await pool.start(system)
        worker = system.lookup("tasks-worker-1")
        Child.of(worker).fail(RuntimeError("injected"))
        await eventually(lambda: Child.of(worker).restarts == 1, 10)
        for i in range(10):
            client.enqueue("add", i, 0)
        await eventually(lambda: len(log.of("add")) == 10, 10)
        assert Child.of(ref).state.name == "RUNNING"
        await pool.stop()


async def test_stopping_gives_unstarted_tasks_back(task_broker: dramatiq.Broker) -> None:
    log = Log()
    tasks = TaskRegistry()

    @tasks.task
    def nap(i: int) -> None:
        time.sleep(0.05)
        log.add("nap", i)

    client = TaskClient(task_broker, tasks)
    for i in range(30):
        client.enqueue("nap", i)
    async with ActorSystem() as system:
        pool = WorkerPool(task_broker, tasks, concurrency=2, prefetch=10)
        await pool.start(system)
        await eventually(lambda: len(log.of("nap")) >= 2, 10)
        await pool.stop()
        done = len(log.of("nap"))
        assert done < 30
        pool = WorkerPool(task_broker, tasks, concurrency=4, name="again")
        await pool.start(system)
        await eventually(lambda: len({a for a in log.of("nap")}) == 30, 20)
        await pool.stop()


async def test_a_system_shutdown_stops_a_running_pool_promptly(
    task_broker: dramatiq.Broker,
) -> None:
    log = Log()
    tasks = make_tasks(log)
    client = TaskClient(task_broker, tasks)
    system = ActorSystem()
    async with system:
        pool = WorkerPool(task_broker, tasks, concurrency=2)
        await pool.start(system)
        client.enqueue("add", 1, 1)
        client.enqueue("add", 2, 2, delay=30)  # held by the delay fetcher, given back on stop
        await eventually(lambda: log.of("add") == [(1, 1)], 10)
        began = time.monotonic()
    assert time.monotonic() - began < 3
    assert Inspector(task_broker).queues(["default"])[0].scheduled == 1


async def test_task_metrics_are_exported_with_bounded_labels(task_broker: dramatiq.Broker) -> None:
    from prometheus_client import CollectorRegistry, generate_latest

    from troupe.metrics import TroupeCollector

    log = Log()
    tasks = make_tasks(log)
    client = TaskClient(task_broker, tasks)
    async with ActorSystem() as system:
        pool = WorkerPool(task_broker, tasks, concurrency=2)
        await pool.start(system)
        for i in range(3):
            client.enqueue("add", i, i)
        client.enqueue("flaky", "m", max_retries=0)
        client.enqueue("nobody_knows_me")
        await eventually(lambda: pool.stats.total("flaky", "default", "dead") == 1, 10)
        await eventually(lambda: pool.stats.total("_unknown", "default", "dead") == 1, 10)
        await eventually(lambda: pool.stats.total("add", "default", "done") == 3, 10)
        assert system.metrics is not None
        registry = CollectorRegistry()
        registry.register(TroupeCollector([system.metrics.snapshots]))
        text = generate_latest(registry).decode()
        await pool.stop()
    assert 'troupe_tasks_total{outcome="done",queue="default",task="add"} 3.0' in text
    assert 'troupe_tasks_total{outcome="dead",queue="default",task="flaky"} 1.0' in text
    # a task type nobody registered is one label, never its name from the message
    assert 'task="_unknown"' in text and "nobody_knows_me" not in text
    assert 'troupe_task_seconds_total{outcome="done",queue="default",task="add"}' in text
