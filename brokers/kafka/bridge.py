"""``KafkaConsumerBridge``: the consumer bridge, plus seeking by offset or by time.

It is :class:`~troupe.brokers.ConsumerBridge` (the delivery contract unchanged) with
one more message: ask it a :class:`Seek` to move the partitions assigned to this
member to given offsets, or to the first record at or after a timestamp. Records out
at the time are abandoned (their acks no longer count), the new position is
committed at once and delivery goes on from there. Each member seeks its own
partitions: ask every bridge of the group, or move an idle group's offsets with
:meth:`KafkaBroker.seek_group <troupe.brokers.kafka.KafkaBroker.seek_group>`.

>>> from troupe.brokers.kafka.bridge import Seek
>>> Seek(offsets={0: 120})
Seek(offsets={0: 120}, timestamp=None)
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

from ..base import BrokerError
from ..consumer import ConsumerBridge
from .session import KafkaSession

logger = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Seek:
    """Move this member's partitions: ``offsets`` (partition -> offset) or ``timestamp``
    (a ``time.time()`` value). The reply is the offset per partition moved."""

    offsets: dict[int, int] | None = None
    timestamp: float | None = None


class KafkaConsumerBridge(ConsumerBridge):
    """A :class:`~troupe.brokers.ConsumerBridge` for Kafka that also answers :class:`Seek`."""

    async def receive(self, message: Any) -> Any:
        if isinstance(message, Seek):
            session = self._session
            if not isinstance(session, KafkaSession):
                raise BrokerError(f"bridge {self.name} has not joined its Kafka group yet")
            moved = await session.seek(offsets=message.offsets, timestamp=message.timestamp)
            logger.info("bridge %s moved partitions to %s", self.name, moved)
            return moved
        return super().receive(message)


__all__ = ["KafkaConsumerBridge", "Seek"]
