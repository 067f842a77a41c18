"""Broker test fixtures: a session-wide redis-server and a broker of every kind.

Other test folders reuse the Redis fixtures with
``from troupe.brokers.servers.pytest_plugin import redis_server, redis_url  # noqa: F401``.
RabbitMQ and Kafka join the conformance suite by adding their id to ``BROKERS``
and a branch in ``broker_url``.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from troupe.brokers import Broker, Capabilities, MemoryBroker, connect
from troupe.brokers.servers.pytest_plugin import (
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


def _capabilities(broker_id: str) -> Capabilities:
    """What a broker kind offers, read from its class (no server needed)."""
    if broker_id == "memory":
        return MemoryBroker.capabilities
    if broker_id == "redis":
        from troupe.brokers.redis.broker import RedisBroker

        return RedisBroker.capabilities
    if broker_id == "rabbitmq":
        from troupe.brokers.rabbitmq import RabbitBroker

        return RabbitBroker.capabilities
    from troupe.brokers.kafka import KafkaBroker

    return KafkaBroker.capabilities


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """A test marked ``needs(capability=value, ...)`` is collected only for the brokers
    that have it: a contract a broker does not promise is not run (nor reported skipped)."""
    kept: list[pytest.Item] = []
    dropped: list[pytest.Item] = []
    for item in items:
        marker = item.get_closest_marker("needs")
        callspec = getattr(item, "callspec", None)
        broker_id = callspec.params.get("broker_url") if callspec is not None else None
        if marker is None or broker_id is None:
            kept.append(item)
            continue
        capabilities = _capabilities(broker_id)
        wanted = all(getattr(capabilities, k) == v for k, v in marker.kwargs.items())
        (kept if wanted else dropped).append(item)
    if dropped:
        config.hook.pytest_deselected(items=dropped)
        items[:] = kept


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
