"""The order flow over RabbitMQ and over Kafka with a real fault: the bridge that carries the
order events is killed abruptly (no drain, nothing more acked by it) while orders are in
flight; its supervisor restarts it. Every order settles, each effect happens once and each
order's outcome is published once."""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

import pytest

from troupe import ActorSystem
from troupe.actors.saga_log import SagaStatus
from troupe.examples.orders import CreateOrder
from troupe.examples.orders.app import OrderApp, OrderSettings, start_orders
from troupe.examples.orders.service import BRIDGE

pytestmark = pytest.mark.broker

ORDERS = 20


async def submit(app: OrderApp, order: CreateOrder) -> dict[str, Any]:
    """Submit as a client does: again (same order id, so placed once) while the broker
    side recovers from the fault."""
    for attempt in range(4):
        try:
            return await app.submit(order, timeout=10)
        except Exception:
            if attempt == 3:
                raise
            await asyncio.sleep(0.2)
    raise AssertionError("unreachable")


@pytest.mark.parametrize("kind", ["rabbitmq", "kafka"])
async def test_orders_settle_once_when_the_bridge_is_killed(
    request: pytest.FixtureRequest, kind: str
) -> None:
    url: str = request.getfixturevalue(f"{kind}_url")
    namespace = f"t-{uuid.uuid4().hex[:8]}-"  # a valid Kafka topic prefix (no ':')
    settings = OrderSettings(broker_url=url, namespace=namespace)
    orders = [CreateOrder(f"o{i}", "ada", {"book": 1 + i % 3}, 100 + i) for i in range(ORDERS)]
    async with ActorSystem(f"orders-{kind}", shutdown_timeout=1.0) as system:
        app = await start_orders(system, settings)
        try:
            first = await asyncio.gather(*(submit(app, o) for o in orders[:10]))
            bridge = system.lookup(BRIDGE)
            system.cell_of(bridge).kill()  # abrupt: what it fetched and did not ack is pending
            second = await asyncio.gather(*(submit(app, o) for o in orders[10:]))
            assert all(r["status"] == "accepted" for r in first + second)
            await app.settled(ORDERS, timeout=25)
            await asyncio.sleep(0.3)  # room for a duplicate outcome to show up
            for history in (app.inventory.history, app.payments.history, app.mailer.history):
                assert sorted(history) == sorted(set(history)), f"twice: {history}"
            for order in orders:
                record = await app.saga_log.load("order", order.order_id)
                assert record is not None and record.status is SagaStatus.COMPLETED, record
                assert ("charge", order.order_id) in app.payments.history
            assert len(app.payments.history) == ORDERS
            # the flow published each order's outcome once; the counter subscriber sees
            # every event at least once (a delivery the killed bridge had not acked
            # comes again)
            assert app.outcomes == {"completed:-": ORDERS}, app.outcomes
            for topic in ("OrderPlaced", "PaymentCompleted", "OrderConfirmed"):
                assert app.events[topic] >= ORDERS, app.events
        finally:
            await system.shutdown()
            await app.close()
