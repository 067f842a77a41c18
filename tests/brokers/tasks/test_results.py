"""Results read by stock dramatiq, unique locks released on cancel and on success, and the
dead-letter record's ``retries`` equal to stock dramatiq's, on Redis (and RabbitMQ)."""

from __future__ import annotations

import threading

import dramatiq
import pytest
from dramatiq import Message
from dramatiq.brokers.redis import RedisBroker
from dramatiq.middleware import Retries as DramatiqRetries
from dramatiq.results import ResultFailure
from dramatiq.results.backends import RedisBackend

from tests.helpers import eventually
from troupe import ActorSystem
from troupe.brokers.tasks import (
    DuplicateTask,
    Inspector,
    RedisControl,
    Results,
    TaskClient,
    TaskRegistry,
    WorkerPool,
    default_middleware,
    open_broker,
    result_backend,
)

pytestmark = pytest.mark.broker


async def test_stock_dramatiq_reads_the_results_troupe_stored(redis_url: str) -> None:
    tasks = TaskRegistry()

    @tasks.task
    def add(a: int, b: int) -> int:
        return a + b

    @tasks.task(max_retries=0)
    def broken() -> None:
        raise ValueError("no good")

    broker = open_broker(redis_url)
    client = TaskClient(broker, tasks)
    ok = client.enqueue(add, 2, 3)
    bad = client.enqueue(broken)
    results = Results(result_backend(broker), ttl=60)
    async with ActorSystem() as system:
        pool = WorkerPool(broker, tasks, middleware=[*default_middleware(), results])
        await pool.start(system)
        await eventually(lambda: pool.stats.total("broken", "default", "dead") == 1, 15)
        await eventually(lambda: pool.stats.total("add", "default", "done") == 1, 15)
        await pool.stop()
    stock = RedisBackend(url=redis_url)  # a stock dramatiq program's backend
    assert ok.message.get_result(backend=stock) == 5
    with pytest.raises(ResultFailure, match="no good"):
        bad.message.get_result(backend=stock)
    ttl = stock.client.pttl(stock.build_message_key(ok.message))
    assert 0 < ttl <= 60_000  # kept for the retention time
    broker.close()


@pytest.mark.parametrize("kind", ["redis", "rabbitmq"])
async def test_cancel_releases_the_unique_lock_at_once(
    kind: str, redis_url: str, request: pytest.FixtureRequest
) -> None:
    url = redis_url if kind == "redis" else request.getfixturevalue("rabbitmq_url")
    broker = open_broker(url)
    control = RedisControl(redis_url)
    client = TaskClient(broker, control=control)
    first = client.enqueue("report", "may", delay=3600, unique_for=3600)
    with pytest.raises(DuplicateTask):
        client.enqueue("report", "may", delay=3600, unique_for=3600)
    assert client.cancel(first.id) == "queued"
    again = client.enqueue("report", "may", delay=3600, unique_for=3600)  # no wait for the eta
    assert again.id != first.id
    control.close()
    broker.close()


async def test_release_unique_on_success(redis_url: str) -> None:
    tasks = TaskRegistry()
    ran: list[str] = []

    @tasks.task
    def report(month: str) -> None:
        ran.append(month)

    broker = open_broker(redis_url)
    client = TaskClient(broker, tasks)
    client.enqueue(report, "may", unique_for=3600, release_unique_on_success=True)
    client.enqueue(report, "june", unique_for=3600)  # keeps its lock for the window
    async with ActorSystem() as system:
        pool = WorkerPool(broker, tasks, concurrency=1)
        await pool.start(system)
        await eventually(lambda: sorted(ran) == ["june", "may"], 15)
        await pool.stop()
    client.enqueue(report, "may", unique_for=3600)  # released when it succeeded
    with pytest.raises(DuplicateTask):
        client.enqueue(report, "june", unique_for=3600)
    broker.close()


def dead_record(broker: dramatiq.Broker) -> dict[str, object]:
    [record] = Inspector(broker).dead("default")
    return {"retries": record.retries, "error": (record.error or "").split(":")[0]}


async def test_dead_letter_retries_match_stock_dramatiq(redis_url: str) -> None:
    """The same failing task, max_retries=2, under a stock dramatiq Worker with its Retries
    middleware and under troupe's pool: the dead-letter records agree."""
    options = {"max_retries": 2, "min_backoff": 10, "max_backoff": 20}
    stock = RedisBroker(url=redis_url, middleware=[DramatiqRetries()])  # type: ignore[no-untyped-call]
    failed = threading.Event()

    @dramatiq.actor(broker=stock, actor_name="flaky", **options)
    def flaky() -> None:
        failed.set()
        raise RuntimeError("flaky")

    stock.enqueue(Message("default", "flaky", (), {}, dict(options)))
    worker = dramatiq.Worker(stock, worker_threads=1, worker_timeout=50)
    worker.start()
    try:
        await eventually(lambda: Inspector(stock).queues(["default"])[0].dead == 1, 30)
    finally:
        worker.stop()
    theirs = dead_record(stock)
    stock.client.flushall()

    tasks = TaskRegistry()

    @tasks.task(name="flaky", max_retries=2, min_backoff=0.01, max_backoff=0.02)
    def troupe_flaky() -> None:
        raise RuntimeError("flaky")

    broker = open_broker(redis_url)
    TaskClient(broker, tasks).enqueue("flaky")
    async with ActorSystem() as system:
        pool = WorkerPool(broker, tasks, concurrency=1)
        await pool.start(system)
        await eventually(lambda: Inspector(broker).queues(["default"])[0].dead == 1, 30)
        await pool.stop()
    assert dead_record(broker) == theirs == {"retries": 2, "error": "RuntimeError"}
    broker.close()
    stock.close()
