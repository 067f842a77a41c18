"""Broadcast topics on Redis: a stream per topic, trimmed and expiring, read with XREAD."""

from __future__ import annotations

import time
import weakref
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from ..base import to_str
from ..message import Message, from_fields
from ..tail import TOPIC_BACKLOG, TOPIC_IDLE_TTL, Tail

if TYPE_CHECKING:
    from .broker import RedisBroker

BODY = b"b"  # the one field of a topic entry (troupe.brokers.message reads it as the body)


#: Seconds between renewals of a topic's expiry by one broker object.
RENEW_EVERY = TOPIC_IDLE_TTL / 4
_renewed: weakref.WeakKeyDictionary[RedisBroker, dict[str, float]] = weakref.WeakKeyDictionary()


# Append a batch of bodies in one round trip: KEYS[1] the topic; ARGV[1] the backlog bound,
# ARGV[2] the idle expiry in seconds or '' (not renewed this time), then one body each.
_BROADCAST = """
for i = 3, #ARGV do
  redis.call('XADD', KEYS[1], 'MAXLEN', '~', ARGV[1], '*', 'b', ARGV[i])
end
if ARGV[2] ~= '' then
  redis.call('EXPIRE', KEYS[1], ARGV[2])
end
return #ARGV - 2
"""


async def broadcast(broker: RedisBroker, topic: str, messages: Sequence[Message]) -> None:
    """XADD each message's body (``MAXLEN ~``), several in one Lua script, and now and then
    renew the stream's idle expiry. Only the body travels: a tail's message id is the
    entry id (a topic is troupe's own channel, with no other producers)."""
    renewed = _renewed.setdefault(broker, {})
    now = time.monotonic()
    renew = renewed.get(topic, 0.0) <= now
    async with broker._errors("broadcast"):
        if len(messages) == 1 and not renew:
            fields: Any = {BODY: messages[0].body}
            await broker.client.xadd(topic, fields, maxlen=TOPIC_BACKLOG, approximate=True)
            return
        args: list[Any] = [TOPIC_BACKLOG, TOPIC_IDLE_TTL if renew else ""]
        args.extend(message.body for message in messages)
        await broker.script(_BROADCAST)(keys=[topic], args=args)
    if renew:
        renewed[topic] = now + RENEW_EVERY


class RedisTail(Tail):
    """Reads a topic's stream from the entry that was last when it opened."""

    def __init__(self, broker: RedisBroker, topic: str, last_id: str) -> None:
        super().__init__(topic)
        self._broker = broker
        self._last = last_id

    @classmethod
    async def open(cls, broker: RedisBroker, topic: str) -> RedisTail:
        """A tail from the stream's current end."""
        async with broker._errors("XREVRANGE"):
            last: Any = await broker.client.xrevrange(topic, count=1)
        return cls(broker, topic, to_str(last[0][0]) if last else "0-0")

    async def fetch(self, timeout: float) -> list[Message]:
        block = max(1, int(timeout * 1000)) if timeout > 0 else None
        async with self._broker._errors("XREAD"):
            found: Any = await self._broker.client.xread(
                {self.topic: self._last}, count=TOPIC_BACKLOG, block=block
            )
        out: list[Message] = []
        for _stream, entries in found or ():
            for entry_id, fields in entries:
                self._last = to_str(entry_id)
                body = fields.get(BODY)
                # a topic entry is a body alone (broadcast); anything else is read as a message
                out.append(Message(body, None, {}, self._last, 0.0) if len(fields) == 1 and
                           body is not None else from_fields(fields, self._last))  # fmt: skip
        return out


__all__ = ["RedisTail", "broadcast"]
