"""Dramatiq brokers by URL, and the queue names dramatiq derives from a queue.

>>> broker = open_broker("stub://")
>>> type(broker).__name__
'StubBroker'
>>> delay_queue("default"), dead_queue("default"), canonical("default.DQ")
('default.DQ', 'default.XQ', 'default')

``stub://NAME`` gives the process-wide StubBroker called NAME (the embedded
default: a client and a worker pool in one process share it); ``redis://``
and ``rediss://`` a :class:`dramatiq.brokers.redis.RedisBroker`; ``amqp://``
and ``amqps://`` a :class:`dramatiq.brokers.rabbitmq.RabbitmqBroker`. The
brokers are made without dramatiq middleware: troupe's task middleware runs
in the workers, and a stock dramatiq producer or worker brings its own.
"""

from __future__ import annotations

import logging
import threading
from typing import Any

import dramatiq
from dramatiq.brokers.stub import StubBroker
from dramatiq.common import dq_name, q_name, xq_name

from troupe.errors import ConfigError

logger = logging.getLogger(__name__)

_stubs: dict[str, StubBroker] = {}
_stubs_lock = threading.Lock()


def open_broker(url: str | dramatiq.Broker, *, namespace: str | None = None) -> dramatiq.Broker:
    """The dramatiq broker for ``url`` (a broker instance is returned as it is);
    ``namespace``: the Redis key prefix (dramatiq's default: ``dramatiq``)."""
    if isinstance(url, dramatiq.Broker):
        return url
    if not isinstance(url, str):
        raise ConfigError("broker", f"must be a URL or a dramatiq Broker, got {url!r}")
    scheme = url.partition("://")[0].lower() if "://" in url else ""
    if scheme in ("stub", "memory"):
        name = url.split("://", 1)[1] or "default"
        with _stubs_lock:
            broker = _stubs.get(name)
            if broker is None:
                broker = _stubs[name] = StubBroker(middleware=[])
        return broker
    if scheme in ("redis", "rediss", "unix"):
        from dramatiq.brokers.redis import RedisBroker

        options = {"namespace": namespace} if namespace else {}
        return RedisBroker(url=url, middleware=[], **options)  # type: ignore[no-untyped-call]
    if scheme in ("amqp", "amqps"):
        from dramatiq.brokers.rabbitmq import RabbitmqBroker

        return RabbitmqBroker(url=url, middleware=[])
    raise ConfigError(
        "broker",
        f"unknown broker URL scheme {scheme!r}; use stub://, redis://, rediss:// or amqp://",
    )


def forget_stub(name: str = "default") -> None:
    """Drop the process-wide StubBroker called ``name`` (tests start from a fresh one)."""
    with _stubs_lock:
        _stubs.pop(name, None)


def declare(broker: dramatiq.Broker, queues: list[str] | tuple[str, ...] | set[str]) -> None:
    """Declare ``queues`` (and their delay queues) on ``broker``."""
    for queue in queues:
        broker.declare_queue(queue)


def delay_queue(queue: str) -> str:
    """The delay queue of ``queue`` (``NAME.DQ``): scheduled tasks and retries wait there."""
    return dq_name(queue)


def dead_queue(queue: str) -> str:
    """The dead-letter queue of ``queue`` (``NAME.XQ``)."""
    return xq_name(queue)


def canonical(queue: str) -> str:
    """``queue`` without a ``.DQ``/``.XQ`` suffix."""
    return q_name(queue)


def broker_kind(broker: Any) -> str:
    """``stub``, ``redis`` or ``rabbitmq``."""
    return type(broker).__name__.lower().removesuffix("broker")
