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
from dramatiq.errors import BrokerConnectionError

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


def connection_errors() -> tuple[type[BaseException], ...]:
    """The exceptions that mean "the broker is unreachable" (dramatiq's, and redis-py's,
    which dramatiq's RedisBroker lets through on enqueue)."""
    errors: list[type[BaseException]] = [BrokerConnectionError]
    try:
        import redis

        errors += [redis.ConnectionError, redis.TimeoutError]
    except ImportError:  # the redis extra is not installed
        pass
    return tuple(errors)


class Outage:
    """Backoff and one log line per outage of a broker connection (thread-safe enough:
    each fetcher and worker thread keeps its own)."""

    def __init__(self, what: str, initial: float = 0.05, maximum: float = 2.0) -> None:
        self.what = what
        self.initial = initial
        self.maximum = maximum
        self.delay = 0.0

    def failed(self, exc: BaseException) -> float:
        """Note a failure; the seconds to wait before trying again."""
        if self.delay == 0.0:
            logger.warning("%s: broker unreachable (%s); retrying with backoff", self.what, exc)
            self.delay = self.initial
        else:
            self.delay = min(self.maximum, self.delay * 2)
        return self.delay

    def recovered(self) -> None:
        """Note a success (logs the recovery once)."""
        if self.delay:
            logger.info("%s: broker reachable again", self.what)
            self.delay = 0.0


def broker_kind(broker: Any) -> str:
    """``stub``, ``redis`` or ``rabbitmq``."""
    return type(broker).__name__.lower().removesuffix("broker")
