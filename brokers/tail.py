"""Broadcast topics and tails: the transport of remote actors' replies and heartbeats.

A *topic* fans out: every :class:`Tail` open on it gets each message broadcast
after it opened (never the ones before), at most once, in broadcast order. It
is not durable and holds a bounded backlog; nothing is acked or redelivered.
Remote actors (:mod:`troupe.actors.remote`) use one topic per actor system as
its inbox (replies, asks to its members) and one per exported name for
membership heartbeats. ``Broker.broadcast`` returns once a batch is sent;
``Broker.broadcast_queued`` once it is queued in order, its sending a future, so
a sender may queue the next batch meanwhile (Kafka: the producer's acks=all wait).

How each broker makes a topic:

=========  ====================================================================
memory     a bounded queue per open tail, in this process
Redis      a stream trimmed with ``MAXLEN ~`` (expiring when idle), read with
           ``XREAD BLOCK`` from the last entry at open
RabbitMQ   a fanout exchange; each tail an exclusive, auto-delete queue (auto ack)
Kafka      a topic read without a group from its end at open
=========  ====================================================================
"""

from __future__ import annotations

from abc import ABC, abstractmethod

from .message import Message

#: The most messages a topic (or a tail's backlog) keeps; older ones are dropped.
TOPIC_BACKLOG = 10_000
#: Seconds an idle topic's storage is kept (Redis: the stream's expiry).
TOPIC_IDLE_TTL = 3600


class Tail(ABC):
    """Messages broadcast on ``topic`` after this tail opened (see the module doc)."""

    def __init__(self, topic: str) -> None:
        self.topic = topic

    @abstractmethod
    async def fetch(self, timeout: float) -> list[Message]:
        """The messages that arrived, oldest first; waits up to ``timeout`` seconds for one."""

    async def close(self) -> None:  # noqa: B027 - optional hook
        """Stop receiving (idempotent)."""


__all__ = ["TOPIC_BACKLOG", "TOPIC_IDLE_TTL", "Tail"]
