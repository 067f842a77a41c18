"""Publishing to Redis once per (producer, sequence): retries never store a batch twice.

A producer that lost the reply to a publish cannot know whether Redis stored
it. :func:`publish_once` runs one Lua script that stores the batch (``XADD``
each message, or the delayed hash + sorted-set entry) and records the batch's
sequence number in a small hash ``<stream>:producer:<producer>`` (``seq``, the
entry ids) that expires after ``window`` seconds. The script is atomic: a
retry of the same sequence finds the record and gets the stored entry ids
back instead of appending again; an older sequence than the recorded one is
refused. One record per producer per stream, so memory stays bounded.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from typing import Any

import redis.asyncio as aioredis

from ..base import BrokerError, to_str
from ..message import Message, to_fields

logger = logging.getLogger(__name__)

# KEYS[1] the stream (or its delayed sorted set), KEYS[2] the producer's record.
# ARGV: mode ('a' append, 'd' delay, 'p' append packed messages), sequence, record ttl ms,
# maxlen or '', due ms, then per message: id, field count n, n field/value pairs; in mode
# 'p' (every message is its one packed field 'm', as to_fields writes it) two arguments for
# the whole batch: the values' byte lengths joined by ',' and the values joined (one
# argument each, not one per message: the client encodes every argument on its own).
_PUBLISH_ONCE = """
local done = redis.call('HGET', KEYS[2], 'seq')
if done then
  done = tonumber(done)
  local seq = tonumber(ARGV[2])
  if done == seq then
    return {1, redis.call('HGET', KEYS[2], 'ids') or ''}
  end
  if done > seq then
    return {2, tostring(done)}
  end
end
local ids = {}
local function append(fields)
  if ARGV[4] ~= '' then
    ids[#ids + 1] = redis.call('XADD', KEYS[1], 'MAXLEN', '~', ARGV[4], '*', unpack(fields))
  else
    ids[#ids + 1] = redis.call('XADD', KEYS[1], '*', unpack(fields))
  end
end
if ARGV[1] == 'p' then
  local blob, at = ARGV[7], 1
  for size in string.gmatch(ARGV[6], '%d+') do
    local stop = at + tonumber(size)
    append({'m', string.sub(blob, at, stop - 1)})
    at = stop
  end
else
  local i = 6
  while i <= #ARGV do
    local id = ARGV[i]
    local n = tonumber(ARGV[i + 1])
    local fields = {}
    for j = 1, 2 * n do
      fields[j] = ARGV[i + 1 + j]
    end
    i = i + 2 + 2 * n
    if ARGV[1] == 'd' then
      redis.call('HSET', KEYS[1] .. ':' .. id, unpack(fields))
      redis.call('ZADD', KEYS[1], ARGV[5], id)
    else
      append(fields)
    end
  end
end
local joined = table.concat(ids, ' ')
redis.call('HSET', KEYS[2], 'seq', ARGV[2], 'ids', joined)
redis.call('PEXPIRE', KEYS[2], ARGV[3])
return {0, joined}
"""

STORED, REPEATED, STALE = 0, 1, 2
_PACKED = b"m"  # the one field of a message as to_fields packs it


def record_key(stream: str, producer: str) -> str:
    """The hash that remembers ``producer``'s last stored batch on ``stream``."""
    return f"{stream}:producer:{producer}"


async def publish_once(
    client: aioredis.Redis,
    stream: str,
    messages: Sequence[Message],
    *,
    producer: str,
    sequence: int,
    window: float,
    maxlen: int | None = None,
    due: float | None = None,
    delayed_key: str | None = None,
) -> list[str]:
    """Store ``messages`` on ``stream`` once per (producer, sequence); the entry ids.

    With ``due`` (a ``time.time()`` timestamp) the messages go to the sorted set
    ``delayed_key`` instead (entry ids ``""``). Raises :class:`BrokerError` for a
    sequence older than the producer's last stored one. Redis errors propagate.
    """
    all_fields = [to_fields(message) for message in messages]
    packed = [fields.get(_PACKED) for fields in all_fields if len(fields) == 1]
    mode = "d" if due is not None else "a"
    if due is None and len(packed) == len(messages) and None not in packed:
        mode = "p"  # the common case: one value per message on the wire, not four
    args: list[Any] = [
        mode,
        sequence,
        max(1, math.ceil(window * 1000)),
        "" if maxlen is None else maxlen,
        0 if due is None else int(due * 1000),
    ]
    if mode == "p":
        values: list[bytes] = packed  # type: ignore[assignment]  # (no None: checked above)
        args.append(",".join([str(len(value)) for value in values]))
        args.append(b"".join(values))
    else:
        for message, fields in zip(messages, all_fields, strict=True):
            args.append(message.id)
            args.append(len(fields))
            for name, value in fields.items():
                args.append(name)
                args.append(value)
    target = stream if due is None else (delayed_key or f"{stream}:delayed")
    script = client.register_script(_PUBLISH_ONCE)
    reply: Any = await script(keys=[target, record_key(stream, producer)], args=args)
    status, joined = int(reply[0]), to_str(reply[1])
    if status == STALE:
        raise BrokerError(
            f"batch {sequence} of producer {producer} on {stream!r} is older than the last "
            f"stored one ({joined}); not stored"
        )
    if status == REPEATED:
        logger.debug("batch %d of producer %s on %r was already stored", sequence, producer, stream)
    if due is not None:
        return ["" for _ in messages]
    ids = joined.split(" ") if joined else []
    if len(ids) != len(messages):
        raise BrokerError(
            f"batch {sequence} of producer {producer} on {stream!r}: {len(ids)} entry ids "
            f"for {len(messages)} messages"
        )
    return ids


__all__ = ["publish_once", "record_key"]
