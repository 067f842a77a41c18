"""Broker test fixtures: a session-wide redis-server and a broker of every kind.

Other test folders reuse the Redis fixtures with
``from troupe.brokers.pytest_plugin import redis_server, redis_url  # noqa: F401``.
RabbitMQ and Kafka join the conformance suite by adding their id to ``BROKERS``
and a branch in ``broker_url``.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from troupe.brokers import Broker, connect
from troupe.brokers.pytest_plugin import (
    kafka_server,
    kafka_url,
    rabbitmq_server,
    rabbitmq_url,
    redis_server,
    redis_url,
)

__all__ = [
    "broker",
    "broker_url",
    "kafka_server",
    "kafka_url",
    "rabbitmq_server",
    "rabbitmq_url",
    "redis_server",
    "redis_url",
]

BROKERS = ["memory", "redis", "rabbitmq", "kafka"]


@pytest.fixture(params=BROKERS)
def broker_url(request: pytest.FixtureRequest) -> str:
    """The URL of an empty broker of each kind."""
    if request.param == "memory":
        return "memory://"
    if request.param == "redis":
        url: str = request.getfixturevalue("redis_url")
        return url
    if request.param == "rabbitmq":
        amqp: str = request.getfixturevalue("rabbitmq_url")
        return amqp
    if request.param == "kafka":
        kafka: str = request.getfixturevalue("kafka_url")
        return kafka
    raise AssertionError(f"unknown broker {request.param}")


@pytest.fixture
async def broker(broker_url: str, tmp_path: Path) -> AsyncIterator[Broker]:
    """A connected broker of each kind (attempt journals in the test's own folder)."""
    b = connect(broker_url, journal_dir=tmp_path / "journals")
    await b.connect()
    try:
        yield b
    finally:
        await b.close()
