"""The order example's task side: follow-up tasks after each confirmed order, on weighted
queues, on every broker; and the demo end to end on the embedded broker and Redis."""

from __future__ import annotations

import io

import pytest

from tests.helpers import eventually
from troupe import ActorSystem
from troupe.actors.bus import EventBus
from troupe.examples.orders.demo import DemoOptions, run_demo
from troupe.examples.orders.events import OrderConfirmed
from troupe.examples.orders.tasks import start_order_tasks

pytestmark = pytest.mark.broker


async def test_each_confirmed_order_gets_its_tasks_once(task_broker_url: str) -> None:
    url = "memory://" if task_broker_url.startswith("stub:") else task_broker_url
    async with ActorSystem() as system:
        bus = EventBus(system, name="bus")
        side = await start_order_tasks(system, bus, url, namespace="test:orders:")
        for n in range(20):
            await bus.publish(OrderConfirmed(f"o-{n}"))
        await bus.publish(OrderConfirmed("o-3"))  # a redelivered event: one e-mail still
        assert await side.settled(20, timeout=20)
        await eventually(lambda: side.summary().get("analytics") == 20, 10)
        assert side.summary() == {"email": 20, "invoice": 20, "analytics": 20}
        await side.pool.stop()


@pytest.mark.parametrize("kind", ["memory", "redis"])
async def test_the_demo_runs_its_task_side(kind: str, request: pytest.FixtureRequest) -> None:
    broker = "memory://" if kind == "memory" else request.getfixturevalue("redis_url")
    options = DemoOptions(orders=60, broker=broker, rate=0, metrics_port=None, progress=False)
    result = await run_demo(options, err=io.StringIO())
    assert result.ok
    completed = result.summary["completed"]
    assert completed > 0
    assert result.summary["tasks_email"] == completed
    assert result.summary["tasks_invoice"] == completed
    assert result.summary["tasks_analytics"] == completed
