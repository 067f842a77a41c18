"""troupe.brokers: one delivery contract over the in-memory broker and Redis Streams.

>>> from troupe.brokers import connect
>>> broker = connect("memory://")          # or "redis://127.0.0.1:6379/0", "rediss://..."

- :func:`connect` picks a :class:`Broker` by URL (passwords never shown).
- :class:`ConsumerBridge` (an actor) delivers a stream to a target actor at least once,
  through the broker's :class:`ConsumerSession` (the transport; see
  :mod:`troupe.brokers.session` for how Redis, AMQP and Kafka map onto it).
- :class:`ProducerBridge` (an actor) publishes what it receives, batched and retried.
- :class:`Message`, the header names and serializers are in :mod:`troupe.brokers.message`.
"""

from .base import (
    Broker,
    BrokerConnectionError,
    BrokerError,
    BrokerStats,
    Capabilities,
    ConsumerStats,
    ProducerStats,
    PublishError,
)
from .consumer import ConsumerBridge
from .idempotency import Claim, ClaimState, IdempotencyStore, MemoryIdempotencyStore
from .memory import MemoryBroker
from .message import (
    BYTES,
    JSON,
    BytesSerializer,
    JsonSerializer,
    MalformedMessage,
    Message,
    Serializer,
)
from .producer import ProducerBridge, Publish
from .session import AttemptLog, ConsumerSession, Delivery
from .typed_payloads import TypedSerializer, typed
from .url import connect, redact

__all__ = [
    "BYTES",
    "JSON",
    "AttemptLog",
    "Broker",
    "BrokerConnectionError",
    "BrokerError",
    "BrokerStats",
    "BytesSerializer",
    "Capabilities",
    "Claim",
    "ClaimState",
    "ConsumerBridge",
    "ConsumerSession",
    "ConsumerStats",
    "Delivery",
    "IdempotencyStore",
    "JsonSerializer",
    "MalformedMessage",
    "MemoryBroker",
    "MemoryIdempotencyStore",
    "Message",
    "ProducerBridge",
    "ProducerStats",
    "Publish",
    "PublishError",
    "Serializer",
    "TypedSerializer",
    "connect",
    "redact",
    "typed",
]
