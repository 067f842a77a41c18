"""Choosing a broker by URL (``connect``); passwords stay out of its errors (``redact``)."""

from __future__ import annotations

import logging
import re
from typing import Any

from troupe.errors import ConfigError

from .base import Broker
from .redaction import redact

logger = logging.getLogger(__name__)

SCHEMES = ("memory", "redis", "rediss", "amqp", "amqps", "kafka")


def connect(url: str = "memory://", **options: Any) -> Broker:
    """A broker for ``url``: ``memory://`` (embedded), ``redis://`` / ``rediss://`` (TLS),
    ``amqp://`` / ``amqps://`` (RabbitMQ; the path is the vhost), ``kafka://host:port[,...]``.

    The broker connects on first use (or ``await broker.connect()``).
    ``options`` go to the broker class (e.g. ``maxlen=100_000``).

    >>> connect("memory://")
    <MemoryBroker memory://>
    """
    try:
        return _make(url, options)
    except TypeError as exc:
        unknown = _UNEXPECTED.search(str(exc))
        if unknown is None:
            raise
        raise ConfigError(
            unknown.group(1), f"unknown option for connect({redact(url)!r}): {exc}"
        ) from None


_UNEXPECTED = re.compile(r"unexpected keyword argument '([^']+)'")


def _make(url: str, options: dict[str, Any]) -> Broker:
    scheme = url.split("://", 1)[0].lower() if "://" in url else ""
    if scheme == "memory":
        from .memory import MemoryBroker

        return MemoryBroker(url, **options)
    if scheme in ("redis", "rediss"):
        from .redis.broker import RedisBroker

        return RedisBroker(url, **options)
    if scheme in ("amqp", "amqps"):
        from .rabbitmq.broker import RabbitBroker

        return RabbitBroker(url, **options)
    if scheme == "kafka":
        from .kafka.broker import KafkaBroker

        return KafkaBroker(url, **options)
    raise ConfigError(
        "broker url",
        f"{redact(url)!r} has no supported scheme; use one of "
        + ", ".join(f"{s}://" for s in SCHEMES),
    )
