"""troupe messages as AMQP messages, both ways, and the delay tiers.

A :class:`~troupe.brokers.Message` travels as: body = the body; properties
``message_id`` (the id), ``timestamp`` (whole seconds, as AMQP defines it),
``content_type``, ``app_id`` ``troupe`` (what marks a troupe message), ``delivery_mode`` 2
(persistent); headers = the message's headers plus ``troupe-key`` (the key), and no
headers table at all when there are none (a table costs pika a Python loop each way).
A ``troupe-ts`` header (the exact timestamp) marks a message as troupe's instead where
``app_id`` is another producer's (the DLQ copy of its message), and in messages of
earlier troupe versions. Otherwise the timestamp is kept to the second on RabbitMQ: what
reads it (the crash accounting of the attempts record) allows a minute of clock skew.

A message from another producer (plain pika, amqp-tools) needs none of that:
its AMQP headers become string headers, its other properties become
``amqp-<property>`` headers (``amqp-correlation-id``, ``amqp-reply-to``...),
along with ``amqp-exchange`` and ``amqp-routing-key``; a missing message id is
replaced by a digest of the body and properties. Publishing such a message
again (to the DLQ) restores those properties, so the DLQ keeps the original
bytes and properties.

Delays: a message due in ``d`` seconds waits in a per-stream *delay tier*
queue ``<stream>:delay:<tier>`` with a per-message TTL of exactly ``d``; the
tier queue dead-letters expired messages into the stream's route (the work
exchange). RabbitMQ expires messages only at the head of a queue, so a short
delay behind a longer one waits for it: tiers are a quarter of a doubling wide
(``2**(k/4)`` ms), so a message is late by at most ~19% of its delay, and only
when delays of one tier are mixed out of order.
"""

from __future__ import annotations

import hashlib
import logging
import math
import time
from collections.abc import Mapping
from typing import Any

import pika

from ..message import CONTENT_TYPE, ERROR_REASON, KEY, ORIGINAL_STREAM, Message

logger = logging.getLogger(__name__)

KEY_HEADER = KEY  # "troupe-key"
TIMESTAMP_HEADER = "troupe-ts"  # the exact timestamp, in messages of earlier versions
APP_ID = "troupe"  # the app_id of troupe's messages
PROPERTY_PREFIX = "amqp-"
#: properties carried as ``amqp-<name>`` headers and restored when published again
RESTORED = ("content_encoding", "correlation_id", "reply_to", "type", "app_id", "priority")
#: properties carried as headers only (restoring them would change the message's fate)
INFORMATIVE = ("expiration", "user_id", "cluster_id")


def to_properties(message: Message) -> pika.BasicProperties:
    """The AMQP properties ``message`` is published with (persistent)."""
    headers: dict[str, Any] = {}
    restored: dict[str, Any] = {}
    content_type = None
    for name, value in message.headers.items():
        if name == CONTENT_TYPE:
            content_type = value
        elif name.startswith(PROPERTY_PREFIX):
            prop = name[len(PROPERTY_PREFIX) :].replace("-", "_")
            if prop in RESTORED:
                restored[prop] = int(value) if prop == "priority" and value.isdigit() else value
            else:
                headers[name] = value
        else:
            headers[name] = value
    if message.key is not None:
        headers[KEY_HEADER] = message.key
    if "app_id" in restored:  # a DLQ copy of another producer's message keeps its app_id
        headers[TIMESTAMP_HEADER] = repr(message.timestamp)  # and this header marks it ours
    else:
        restored["app_id"] = APP_ID
    return pika.BasicProperties(
        message_id=message.id,
        timestamp=int(message.timestamp),
        content_type=content_type,
        delivery_mode=2,
        headers=headers or None,
        **restored,
    )


def from_amqp(method: Any, properties: Any, body: bytes) -> tuple[Message, int]:
    """The message an AMQP delivery carries, and the broker's delivery count (1 the first time)."""
    raw_headers: Mapping[str, Any] = properties.headers or {}
    headers: dict[str, str] = {}
    key: str | None = None
    stamp: float | None = None
    count = 1
    for name, value in raw_headers.items():
        if name == KEY_HEADER:
            key = _text(value)
        elif name == TIMESTAMP_HEADER:
            try:
                stamp = float(_text(value))
            except ValueError:
                headers[name] = _text(value)
        elif name == "x-delivery-count":
            count = int(value) + 1 if isinstance(value, int) else count
        elif name == "x-death":  # RabbitMQ's dead-letter history
            _death(value, headers)
        else:
            headers[name] = _text(value)
    if count == 1 and method.redelivered:
        count = 2
    if properties.content_type is not None:
        headers[CONTENT_TYPE] = properties.content_type
    foreign = properties.message_id is None or (
        properties.app_id != APP_ID and TIMESTAMP_HEADER not in raw_headers
    )
    if foreign:
        for prop in (*RESTORED, *INFORMATIVE):
            value = getattr(properties, prop, None)
            if value is not None:
                headers[PROPERTY_PREFIX + prop.replace("_", "-")] = _text(value)
        headers[PROPERTY_PREFIX + "exchange"] = method.exchange
        headers[PROPERTY_PREFIX + "routing-key"] = method.routing_key
    message_id = properties.message_id or _digest(properties, body)
    if stamp is None:
        stamp = float(properties.timestamp) if properties.timestamp is not None else 0.0
    return Message(body, key, headers, message_id, stamp), count


def _death(history: Any, headers: dict[str, str]) -> None:
    """Say why RabbitMQ itself dead-lettered a message (the queue's delivery limit or
    length cap); an expired delay tier is not a failure and says nothing."""
    if not isinstance(history, list) or not history or not isinstance(history[0], dict):
        return
    last = history[0]
    reason = _text(last.get("reason", ""))
    if reason == "expired":
        return
    queue = _text(last.get("queue", ""))
    headers.setdefault(ERROR_REASON, f"dead-lettered by RabbitMQ from {queue!r}: {reason}")
    headers.setdefault(ORIGINAL_STREAM, queue)


def _text(value: Any) -> str:
    if isinstance(value, bytes):
        return value.decode("utf-8", errors="replace")
    return str(value)


def _digest(properties: Any, body: bytes) -> str:
    h = hashlib.sha256(body)
    h.update(repr(sorted((properties.headers or {}).items(), key=lambda kv: kv[0])).encode())
    h.update(repr((properties.correlation_id, properties.timestamp, properties.type)).encode())
    return "sha256-" + h.hexdigest()[:32]


def delay_tier(delay: float) -> int:
    """The delay tier (an index) of a delay in seconds: ``2**(tier/4)`` ms is its upper bound."""
    ms = max(1.0, delay * 1000)
    return max(0, math.ceil(4 * math.log2(ms)))


def delay_queue(stream: str, tier: int) -> str:
    """The delay queue of ``stream`` for ``tier``."""
    return f"{stream}:delay:{tier}"


def delayed_properties(message: Message, due: float) -> tuple[pika.BasicProperties, float]:
    """Properties for a message due at ``due`` (``expiration`` = the remaining ms) and the delay."""
    delay = max(0.001, due - time.time())
    properties = to_properties(message)
    properties.expiration = str(max(1, math.ceil(delay * 1000)))
    return properties, delay


__all__ = [
    "APP_ID",
    "KEY_HEADER",
    "TIMESTAMP_HEADER",
    "delay_queue",
    "delay_tier",
    "delayed_properties",
    "from_amqp",
    "to_properties",
]
