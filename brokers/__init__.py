"""troupe.brokers: one delivery contract over the in-memory broker, Redis Streams,
RabbitMQ and Apache Kafka.

>>> from troupe.brokers import connect
>>> broker = connect("memory://")   # or "redis://127.0.0.1:6379/0", "amqp://...", "kafka://..."

The contract lives once, in broker-neutral modules: ``base`` (:class:`Broker`),
``session`` (the consumer transport), ``consumer`` and ``producer`` (the
bridges), ``message``, ``attempts`` (handler starts, durably), ``idempotency``.
Each broker is a subpackage that supplies only its transport —
:mod:`troupe.brokers.redis`, :mod:`troupe.brokers.rabbitmq`,
:mod:`troupe.brokers.kafka` — plus ``memory`` (embedded) and
:mod:`troupe.brokers.servers` (real servers for tests). Layer contracts keep the
brokers apart and the contract free of any broker client.

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
from .redaction import redact
from .session import AttemptLog, ConsumerSession, Delivery
from .url import connect

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
    "connect",
    "redact",
]
