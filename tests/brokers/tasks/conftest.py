"""Fixtures of the task tests: a dramatiq broker of each kind (stub, Redis, RabbitMQ), empty.

The RabbitMQ fixtures (a rabbitmq-server node, a vhost per test) come from
``troupe.brokers.servers.pytest_plugin``.
"""

from __future__ import annotations

from collections.abc import Iterator

import dramatiq
import pytest
from dramatiq.brokers.stub import StubBroker

from troupe.brokers.servers.pytest_plugin import rabbitmq_server, rabbitmq_url
from troupe.brokers.tasks import open_broker

__all__ = ["rabbitmq_server", "rabbitmq_url", "task_broker", "task_broker_url"]

TASK_BROKERS = ["stub", "redis", "rabbitmq"]


@pytest.fixture(params=TASK_BROKERS)
def task_broker_url(request: pytest.FixtureRequest) -> str:
    """``stub://<test>`` or an empty Redis database's URL."""
    if request.param == "stub":
        return f"stub://{request.node.name}"
    url: str = request.getfixturevalue("redis_url" if request.param == "redis" else "rabbitmq_url")
    return url


@pytest.fixture
def task_broker(task_broker_url: str) -> Iterator[dramatiq.Broker]:
    """A fresh dramatiq broker of each kind (a new StubBroker per test)."""
    broker = (
        StubBroker(middleware=[])
        if task_broker_url.startswith("stub:")
        else open_broker(task_broker_url)
    )
    try:
        yield broker
    finally:
        broker.close()
