"""Choosing a broker by URL, and keeping passwords out of logs and reprs.

>>> redact("redis://app:s3cret@127.0.0.1:6379/0")
'redis://app:***@127.0.0.1:6379/0'
"""

from __future__ import annotations

import logging
import re
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from troupe.errors import ConfigError

from .base import Broker

logger = logging.getLogger(__name__)

SCHEMES = ("memory", "redis", "rediss", "amqp", "amqps", "kafka")


def redact(url: str) -> str:
    """``url`` with any password replaced by ``***``."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return "<unparseable url>"
    if parts.password is None:
        return url
    user = parts.username or ""
    hosts = parts.netloc.rsplit("@", 1)[1]  # as written (Kafka lists several host:port)
    netloc = f"{user}:***@{hosts}"
    return urlunsplit((parts.scheme, netloc, parts.path, parts.query, parts.fragment))


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
        from .redis_streams import RedisBroker

        return RedisBroker(url, **options)
    if scheme in ("amqp", "amqps"):
        from .rabbitmq import RabbitBroker

        return RabbitBroker(url, **options)
    if scheme == "kafka":
        from .kafka import KafkaBroker

        return KafkaBroker(url, **options)
    raise ConfigError(
        "broker url",
        f"{redact(url)!r} has no supported scheme; use one of "
        + ", ".join(f"{s}://" for s in SCHEMES),
    )
