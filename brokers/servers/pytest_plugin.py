"""pytest fixtures for tests on a real Redis: import them into a conftest.py.

>>> # tests/<pkg>/conftest.py
>>> # from troupe.brokers.servers.pytest_plugin import redis_server, redis_url  # noqa: F401

``redis_server`` (session scope) starts one redis-server on a free 127.0.0.1
port with a temporary data folder and stops it at the end; fault tests call
its ``restart()``/``stop()``/``start()``. ``redis_url`` gives each test an
empty database (FLUSHALL) on that server and restarts the server first if a
previous test left it stopped. A missing redis-server binary is a test error
that says how to install it.

``rabbitmq_server`` (session scope) starts one rabbitmq-server node the same way
(:class:`~troupe.brokers.servers.RabbitServer`); ``rabbitmq_url`` gives
each test a new vhost on it.

``kafka_server`` (session scope) starts one Apache Kafka KRaft node
(:class:`~troupe.brokers.servers.KafkaServer`), or none when
``TROUPE_KAFKA_BOOTSTRAP`` names an existing broker (``host:port``); ``kafka_url``
gives each test its own namespace (a topic and group name prefix) on it.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator

import pytest
import redis

from .kafka import KafkaServer
from .process import ServerMissing
from .rabbitmq import RabbitServer
from .redis import RedisServer


@pytest.fixture(scope="session")
def redis_server() -> Iterator[RedisServer]:
    """A redis-server for the whole test session."""
    try:
        server = RedisServer()
    except ServerMissing as exc:
        pytest.fail(str(exc), pytrace=False)
    server.start()
    try:
        yield server
    finally:
        server.close()


@pytest.fixture
def redis_url(redis_server: RedisServer) -> str:
    """The URL of an empty database on the session's redis-server."""
    redis_server.start()
    client = redis.Redis.from_url(redis_server.url)
    try:
        client.flushall()
    finally:
        client.close()
    return redis_server.url


@pytest.fixture(scope="session")
def rabbitmq_server() -> Iterator[RabbitServer]:
    """A rabbitmq-server node for the whole test session (see RabbitServer), with an
    ``amqps://`` listener too (``vhost_url(name, tls=True)``, CA in ``ca_file``)."""
    try:
        server = RabbitServer(tls=True)
    except ServerMissing as exc:
        pytest.fail(str(exc), pytrace=False)
    try:
        server.start()
        yield server
    finally:
        server.close()  # also after a failed start: its epmd and data dir go


@pytest.fixture
def rabbitmq_url(rabbitmq_server: RabbitServer) -> Iterator[str]:
    """The URL of a new, empty vhost on the session's node (deleted after the test)."""
    rabbitmq_server.start()
    vhost = rabbitmq_server.new_vhost()
    try:
        yield rabbitmq_server.vhost_url(vhost)
    finally:
        if rabbitmq_server.process is not None:
            rabbitmq_server.delete_vhost(vhost)


KAFKA_BOOTSTRAP_ENV = "TROUPE_KAFKA_BOOTSTRAP"


@pytest.fixture(scope="session")
def kafka_server() -> Iterator[KafkaServer | None]:
    """A Kafka node for the whole test session (None: ``TROUPE_KAFKA_BOOTSTRAP`` is used)."""
    if os.environ.get(KAFKA_BOOTSTRAP_ENV):
        yield None
        return
    try:
        server = KafkaServer()
    except ServerMissing as exc:
        pytest.fail(str(exc), pytrace=False)
    server.start()
    try:
        yield server
    finally:
        server.close()


@pytest.fixture
def kafka_url(kafka_server: KafkaServer | None) -> str:
    """A ``kafka://`` URL with a namespace of its own (topics and groups of this test)."""
    if kafka_server is None:
        bootstrap = os.environ[KAFKA_BOOTSTRAP_ENV]
    else:
        kafka_server.start()
        bootstrap = kafka_server.bootstrap
    return f"kafka://{bootstrap}?namespace=t{uuid.uuid4().hex[:12]}."
