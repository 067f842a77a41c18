"""The order system's task side: work that follows a completed order runs as tasks.

When an order is confirmed, :class:`CompletedOrders` enqueues three tasks on
weighted queues (``critical`` 6, ``default`` 3, ``low`` 1): the customer's
e-mail (critical, unique per order so a redelivered event sends one), the
invoice (default) and the analytics update (low). A supervised
:class:`~troupe.brokers.tasks.WorkerPool` runs them from the dramatiq broker
that :func:`task_broker` picks for the order system's broker: a StubBroker of
its own for ``memory://``, the same server for ``redis://`` (keys and locks
under the app's namespace) and ``amqp://``.

>>> type(task_broker("memory://", "troupe:orders:")[0]).__name__
'StubBroker'
"""

from __future__ import annotations

import asyncio
import logging
import threading
from collections import Counter
from dataclasses import dataclass
from typing import Any

import dramatiq
from dramatiq.brokers.stub import StubBroker

from troupe.actor import Actor
from troupe.actors.bus import EventBus
from troupe.brokers.tasks import (
    ControlStore,
    DuplicateTask,
    RedisControl,
    TaskClient,
    TaskRegistry,
    WorkerPool,
    open_broker,
)
from troupe.system import ActorSystem

from .events import OrderConfirmed

logger = logging.getLogger(__name__)

QUEUES = {"critical": 6, "default": 3, "low": 1}


def task_broker(broker_url: str, namespace: str) -> tuple[dramatiq.Broker, ControlStore | None]:
    """The task side's dramatiq broker and control store for the order system's broker."""
    if broker_url.startswith(("memory:", "kafka:")):  # dramatiq has no Kafka broker
        return StubBroker(middleware=[]), None
    if broker_url.startswith(("redis://", "rediss://")):
        broker = open_broker(broker_url, namespace=f"{namespace}dramatiq")
        return broker, RedisControl(broker_url, prefix=f"{namespace}tasks:")
    return open_broker(broker_url), None


class Tally:
    """What the tasks did (worker threads write it)."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.done: Counter[str] = Counter()
        self.invoices: dict[str, int] = {}

    def record(self, task: str) -> None:
        with self.lock:
            self.done[task] += 1

    def invoice_number(self, order_id: str) -> int:
        with self.lock:
            return self.invoices.setdefault(order_id, len(self.invoices) + 1)


def order_tasks(tally: Tally) -> TaskRegistry:
    """The task types, recording into ``tally``."""
    tasks = TaskRegistry()

    @tasks.task(queue="critical", max_retries=5, min_backoff=0.05)
    def send_order_email(order_id: str) -> None:
        tally.record("email")

    @tasks.task(queue="default", max_retries=5, min_backoff=0.05)
    def generate_invoice(order_id: str) -> str:
        number = tally.invoice_number(order_id)
        tally.record("invoice")
        return f"INV-{number:06d}"

    @tasks.task(queue="low", max_retries=2, min_backoff=0.05)
    def record_analytics(order_id: str) -> None:
        tally.record("analytics")

    return tasks


@dataclass
class OrderTasks:
    """The running task side."""

    client: TaskClient
    pool: WorkerPool
    tally: Tally

    async def settled(self, orders: int, timeout: float = 30.0) -> bool:
        """Wait until every task of ``orders`` confirmed orders ran; False after ``timeout``."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while min(self.summary().get(t, 0) for t in ("email", "invoice", "analytics")) < orders:
            if loop.time() > deadline:
                return False
            await asyncio.sleep(0.01)
        return True

    def summary(self) -> dict[str, int]:
        """Tasks run, by kind (email, invoice, analytics)."""
        with self.tally.lock:
            return dict(self.tally.done)


class CompletedOrders(Actor):
    """Enqueues an order's follow-up tasks when it is confirmed."""

    def __init__(self, client: TaskClient) -> None:
        self.client = client

    async def receive(self, event: Any) -> None:
        if isinstance(event, OrderConfirmed):
            await asyncio.to_thread(self._enqueue, event.order_id)

    def _enqueue(self, order_id: str) -> None:
        try:
            self.client.enqueue("send_order_email", order_id, unique_for=3600)
        except DuplicateTask:
            return  # this order's e-mail is on its way already
        self.client.enqueue("generate_invoice", order_id)
        self.client.enqueue("record_analytics", order_id)


async def start_order_tasks(
    system: ActorSystem,
    bus: EventBus,
    broker_url: str,
    namespace: str = "troupe:orders:",
    concurrency: int = 4,
) -> OrderTasks:
    """Start the worker pool and the subscriber that enqueues after each confirmed order."""
    broker, control = task_broker(broker_url, namespace)
    tally = Tally()
    registry = order_tasks(tally)
    client = TaskClient(broker, registry, control=control)
    pool = WorkerPool(
        broker,
        registry,
        queues=QUEUES,
        concurrency=concurrency,
        name="orders-tasks",
        control=control,
    )
    await pool.start(system)
    ref = system.spawn(CompletedOrders, client, name="orders.tasks")
    bus.subscribe(ref, OrderConfirmed)
    return OrderTasks(client, pool, tally)
