"""Interop with the real dramatiq package, both ways, on the stub and on Redis: a stock
dramatiq producer's messages run in troupe workers, and a stock dramatiq Worker runs
what troupe enqueued — retry options and dead-lettering included."""

from __future__ import annotations

import threading
import time
from typing import Any

import dramatiq
import pytest
from dramatiq.brokers.rabbitmq import RabbitmqBroker
from dramatiq.brokers.redis import RedisBroker
from dramatiq.brokers.stub import StubBroker

from tests.helpers import eventually
from troupe import ActorSystem
from troupe.brokers.tasks import Inspector, TaskClient, TaskRegistry, WorkerPool, open_broker

pytestmark = pytest.mark.broker


def stock_broker(url: str) -> dramatiq.Broker:
    """A dramatiq broker as a dramatiq user makes it: default middleware."""
    if url.startswith("stub:"):
        return StubBroker()
    if url.startswith("amqp"):
        return RabbitmqBroker(url=url)
    return RedisBroker(url=url)  # type: ignore[no-untyped-call]


def troupe_side(url: str, stock: dramatiq.Broker) -> dramatiq.Broker:
    """Troupe's broker: the same StubBroker object (it lives in memory), or its own
    RedisBroker on the same server."""
    return stock if isinstance(stock, StubBroker) else open_broker(url)


async def test_a_stock_dramatiq_producer_enqueues_what_troupe_runs(task_broker_url: str) -> None:
    stock = stock_broker(task_broker_url)

    @dramatiq.actor(broker=stock, queue_name="default", actor_name="add")
    def stock_add(a: int, b: int) -> None:
        raise AssertionError("the stock actor is only the producer here")

    @dramatiq.actor(broker=stock, queue_name="default", actor_name="fails", max_retries=5)
    def stock_fails() -> None:
        raise AssertionError("the stock actor is only the producer here")

    ran: list[tuple[str, Any]] = []
    tasks = TaskRegistry()

    @tasks.task(name="add")
    def add(a: int, b: int) -> None:
        ran.append(("add", a + b))

    @tasks.task(name="fails", min_backoff=0.01, max_backoff=0.01)
    def fails() -> None:
        ran.append(("fails", None))
        raise RuntimeError("no")

    stock_add.send(1, 2)
    stock_add.send_with_options(args=(3, 4), delay=200)
    # dramatiq's retry options travel on the message: 1 retry, then the dead-letter queue
    stock_fails.send_with_options(max_retries=1)
    ours = troupe_side(task_broker_url, stock)
    async with ActorSystem() as system:
        pool = WorkerPool(ours, tasks, concurrency=2)
        await pool.start(system)
        await eventually(
            lambda: sorted(ran) == [("add", 3), ("add", 7), ("fails", None), ("fails", None)], 15
        )
        await eventually(lambda: Inspector(ours).queues(["default"])[0].dead == 1, 10)
        assert [d.task for d in Inspector(ours).dead("default")] == ["fails"]
        await pool.stop()
    stock.close()


def test_a_stock_dramatiq_worker_runs_what_troupe_enqueues(task_broker_url: str) -> None:
    stock = stock_broker(task_broker_url)
    ran: list[tuple[str, Any]] = []
    lock = threading.Lock()

    @dramatiq.actor(broker=stock, queue_name="default", actor_name="add")
    def add(a: int, b: int) -> None:
        with lock:
            ran.append(("add", a + b))

    @dramatiq.actor(
        broker=stock, queue_name="default", actor_name="fails", min_backoff=10, max_backoff=10
    )
    def fails() -> None:
        with lock:
            ran.append(("fails", None))
        raise RuntimeError("no")

    client = TaskClient(troupe_side(task_broker_url, stock))
    start = time.monotonic()
    client.enqueue("add", 1, 2)
    client.enqueue("add", 2, 3, delay=0.3)
    client.enqueue("fails", max_retries=2)  # dramatiq's Retries reads max_retries from the message
    worker = dramatiq.Worker(stock, worker_threads=2, worker_timeout=50)
    worker.start()
    try:
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline and Inspector(stock).queues(["default"])[0].dead < 1:
            time.sleep(0.02)
        while time.monotonic() < deadline and len(ran) < 5:
            time.sleep(0.02)
        elapsed = time.monotonic() - start
    finally:
        worker.stop()
    assert sorted(ran) == [
        ("add", 3),
        ("add", 5),
        ("fails", None),
        ("fails", None),
        ("fails", None),
    ]
    assert elapsed >= 0.3
    [dead] = Inspector(stock).dead("default")
    assert dead.task == "fails"
    stock.close()
