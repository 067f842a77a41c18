"""Redis Streams broker (redis-py's asyncio client).

- publish: ``XADD`` (``MAXLEN ~`` when ``maxlen`` is set), batches in one pipeline;
- groups: ``XGROUP CREATE ... MKSTREAM``, an existing group (BUSYGROUP) is fine;
- read: ``XREADGROUP`` with the COUNT the bridge asks for (its target's mailbox room);
- own pending after a restart: ``XPENDING`` for the consumer, then ``XCLAIM`` (counted);
- idle pending of dead consumers: ``XAUTOCLAIM``, counts read back from ``XPENDING``;
- retry: ``XCLAIM`` to self, which raises the PEL delivery count;
- dead letters: ``XADD`` to ``<stream>:dlq`` and ``XACK`` in one MULTI/EXEC;
- delay: a sorted set ``<stream>:delayed`` (score = due time in ms) and one hash per
  message; a Lua script moves due messages into the stream atomically.

Connection errors become :class:`BrokerConnectionError` so bridges fail and restart.
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import AsyncIterator, Collection, Sequence
from typing import Any

import redis.asyncio as aioredis
from redis import exceptions as rex

from troupe.backoff import Backoff

from .base import (
    DEFAULT_RECONNECT,
    Broker,
    BrokerConnectionError,
    BrokerError,
    Capabilities,
    Delivery,
    to_str,
)
from .message import JSON, MalformedMessage, Message, Serializer, from_fields, to_fields
from .redis_publish import publish_once

logger = logging.getLogger(__name__)

_PROMOTE = """
local due = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', ARGV[1], 'LIMIT', 0, tonumber(ARGV[2]))
for _, member in ipairs(due) do
  local hkey = KEYS[1] .. ':' .. member
  local fields = redis.call('HGETALL', hkey)
  if #fields > 0 then
    if ARGV[3] ~= '' then
      redis.call('XADD', KEYS[2], 'MAXLEN', '~', ARGV[3], '*', unpack(fields))
    else
      redis.call('XADD', KEYS[2], '*', unpack(fields))
    end
  end
  redis.call('DEL', hkey)
  redis.call('ZREM', KEYS[1], member)
end
return #due
"""

_CONNECTION_ERRORS = (rex.ConnectionError, rex.TimeoutError, OSError)


class RedisBroker(Broker):
    """A :class:`Broker` on Redis Streams (Redis >= 6.2); ``rediss://`` uses TLS.

    ``maxlen`` trims streams approximately on every XADD; other keyword
    options go to ``redis.asyncio.Redis.from_url``.
    """

    capabilities = Capabilities("redis", ordering="stream", durable=True, shared=True)

    def __init__(
        self,
        url: str,
        *,
        maxlen: int | None = None,
        serializer: Serializer = JSON,
        reconnect: Backoff = DEFAULT_RECONNECT,
        **client_options: Any,
    ) -> None:
        super().__init__(url, serializer=serializer, reconnect=reconnect)
        self._raw_url = url
        self.maxlen = maxlen
        self._options = client_options
        self._client: aioredis.Redis | None = None
        self._promote: Any = None
        self._cursors: dict[tuple[str, str], str] = {}

    @property
    def client(self) -> aioredis.Redis:
        """The redis-py client (made on first use)."""
        if self._client is None:
            options: dict[str, Any] = {"socket_connect_timeout": 5.0, "protocol": 2}
            options.update(self._options)
            self._client = aioredis.Redis.from_url(self._raw_url, **options)
            self._promote = self._client.register_script(_PROMOTE)
        return self._client

    async def connect(self) -> None:
        async with self._errors("connect"):
            await self.client.ping()

    async def close(self) -> None:
        client, self._client = self._client, None
        if client is not None:
            with contextlib.suppress(*_CONNECTION_ERRORS):
                await client.aclose()

    @contextlib.asynccontextmanager
    async def _errors(self, what: str) -> AsyncIterator[None]:
        try:
            yield
        except _CONNECTION_ERRORS as exc:
            raise BrokerConnectionError(f"redis {what} on {self.url} failed: {exc}") from exc
        except rex.RedisError as exc:
            raise BrokerError(f"redis {what} on {self.url} failed: {exc}") from exc

    # -- producing ------------------------------------------------------------------------

    async def _append(self, stream: str, messages: Sequence[Message]) -> list[str]:
        async with self._errors("XADD"):
            if len(messages) == 1:
                entry = await self.client.xadd(
                    stream, _wire(messages[0]), maxlen=self.maxlen, approximate=True
                )
                return [to_str(entry)]
            pipe = self.client.pipeline(transaction=False)
            for message in messages:
                pipe.xadd(stream, _wire(message), maxlen=self.maxlen, approximate=True)
            return [to_str(e) for e in await pipe.execute()]

    async def _schedule(self, stream: str, messages: Sequence[Message], due: float) -> None:
        zset = self.delayed_key(stream)
        async with self._errors("schedule"):
            pipe = self.client.pipeline(transaction=True)
            for message in messages:
                pipe.hset(f"{zset}:{message.id}", mapping=_wire(message))
                pipe.zadd(zset, {message.id: int(due * 1000)})
            await pipe.execute()

    async def _publish_once(
        self,
        stream: str,
        messages: Sequence[Message],
        due: float | None,
        producer: str,
        sequence: int,
        window: float,
    ) -> list[str]:
        async with self._errors("publish"):
            return await publish_once(
                self.client,
                stream,
                messages,
                producer=producer,
                sequence=sequence,
                window=window,
                maxlen=self.maxlen,
                due=due,
                delayed_key=self.delayed_key(stream),
            )

    async def promote_due(self, stream: str) -> int:
        self.client  # noqa: B018 - registers the script
        maxlen = "" if self.maxlen is None else str(self.maxlen)
        now_ms = int(time.time() * 1000)
        async with self._errors("promote delayed"):
            moved = await self._promote(
                keys=[self.delayed_key(stream), stream], args=[now_ms, 500, maxlen]
            )
        return int(moved)

    def delayed_key(self, stream: str) -> str:
        """The sorted set that holds ``stream``'s delayed messages."""
        return f"{stream}:delayed"

    # -- consuming ------------------------------------------------------------------------

    async def ensure_group(self, stream: str, group: str) -> None:
        async with self._errors("XGROUP CREATE"):
            try:
                await self.client.xgroup_create(stream, group, id="0", mkstream=True)
            except rex.ResponseError as exc:
                if "BUSYGROUP" not in str(exc):
                    raise

    async def read(
        self, stream: str, group: str, consumer: str, count: int, block: float
    ) -> list[Delivery]:
        block_ms = int(block * 1000)
        async with self._errors("XREADGROUP"):
            try:
                reply: Any = await self.client.xreadgroup(
                    group, consumer, {stream: ">"}, count=count, block=block_ms or None
                )
            except rex.ResponseError as exc:
                if "NOGROUP" not in str(exc):
                    raise
                logger.warning("group %s of stream %s vanished; recreating it", group, stream)
                await self.ensure_group(stream, group)
                return []
        out: list[Delivery] = []
        for _name, entries in reply or ():
            out.extend(
                _delivery(stream, group, entry_id, fields, 1) for entry_id, fields in entries
            )
        return out

    async def claim_own(
        self,
        stream: str,
        group: str,
        consumer: str,
        count: int,
        *,
        after: str | None = None,
        exclude: Collection[str] = (),
    ) -> tuple[list[Delivery], str | None]:
        skip = set(exclude)
        asked = min(count + len(skip), 10_000)
        async with self._errors("XPENDING/XCLAIM"):
            pending: Any = await self.client.xpending_range(
                stream,
                group,
                min="-" if after is None else f"({after}",
                max="+",
                count=asked,
                consumername=consumer,
            )
            listed = [to_str(p["message_id"]) for p in pending]
            counts = {
                to_str(p["message_id"]): int(p["times_delivered"])
                for p in pending
                if to_str(p["message_id"]) not in skip
            }
            ids: list[Any] = list(counts)[:count]
            claimed: Any = await self.client.xclaim(stream, group, consumer, 0, ids) if ids else []
        if len(ids) == count and ids:
            cursor: str | None = ids[-1]  # there may be more after the last one taken
        elif len(listed) == asked and listed:
            cursor = listed[-1]
        else:
            cursor = None
        deliveries = [
            _delivery(stream, group, entry_id, fields, counts.get(to_str(entry_id), 0) + 1)
            for entry_id, fields in claimed
            if fields is not None
        ]
        return deliveries, cursor

    async def claim_idle(
        self, stream: str, group: str, consumer: str, min_idle: float, count: int
    ) -> list[Delivery]:
        cursor_key = (stream, group)
        async with self._errors("XAUTOCLAIM"):
            reply: Any = await self.client.xautoclaim(
                stream,
                group,
                consumer,
                int(min_idle * 1000),
                start_id=self._cursors.get(cursor_key, "0-0"),
                count=count,
            )
            next_cursor, entries = reply[0], reply[1]
            self._cursors[cursor_key] = to_str(next_cursor)
            entries = [(e, f) for e, f in entries if f is not None]
            if not entries:
                return []
            ids = [to_str(e) for e, _ in entries]
            pending: Any = await self.client.xpending_range(
                stream,
                group,
                min=ids[0],
                max=ids[-1],
                count=len(ids) * 4 + 100,
                consumername=consumer,
            )
        counts = {to_str(p["message_id"]): int(p["times_delivered"]) for p in pending}
        return [
            _delivery(stream, group, entry_id, fields, counts.get(to_str(entry_id), 2))
            for entry_id, fields in entries
        ]

    async def redeliver(self, delivery: Delivery, consumer: str) -> Delivery | None:
        async with self._errors("XCLAIM"):
            claimed: Any = await self.client.xclaim(
                delivery.stream, delivery.group, consumer, 0, [delivery.entry_id]
            )
        for entry_id, fields in claimed:
            if fields is not None:
                return _delivery(
                    delivery.stream, delivery.group, entry_id, fields, delivery.deliveries + 1
                )
        return None

    async def ack(self, stream: str, group: str, entry_ids: Sequence[str]) -> int:
        if not entry_ids:
            return 0
        async with self._errors("XACK"):
            return int(await self.client.xack(stream, group, *entry_ids))

    async def _dead_letter(self, delivery: Delivery, dead: Message, dlq: str) -> None:
        async with self._errors("dead-letter"):
            pipe = self.client.pipeline(transaction=True)
            pipe.xadd(dlq, _wire(dead))
            pipe.xack(delivery.stream, delivery.group, delivery.entry_id)
            await pipe.execute()

    async def read_stream(self, stream: str, count: int = 1000) -> list[Message]:
        async with self._errors("XRANGE"):
            entries: Any = await self.client.xrange(stream, count=count)
        return [from_fields(fields, to_str(entry_id)) for entry_id, fields in entries]

    async def pending(self, stream: str, group: str) -> int:
        async with self._errors("XPENDING"):
            summary = await self.client.xpending(stream, group)
        return int(summary["pending"])

    async def lag(self, stream: str, group: str) -> int | None:
        async with self._errors("XINFO GROUPS"):
            groups = await self.client.xinfo_groups(stream)
        for info in groups:
            if to_str(info.get("name")) == group:
                lag = info.get("lag")
                return int(lag) if lag is not None else None
        return None


def _wire(message: Message) -> Any:
    """The message's fields, typed for redis-py."""
    return to_fields(message)


def _delivery(stream: str, group: str, entry_id: Any, fields: Any, count: int) -> Delivery:
    entry = to_str(entry_id)
    try:
        message = from_fields(fields, entry)
    except MalformedMessage as exc:
        return Delivery(stream, group, entry, count, None, str(exc), fields)
    return Delivery(stream, group, entry, count, message)
