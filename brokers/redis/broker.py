"""Redis Streams broker (redis-py's asyncio client).

- publish: ``XADD`` (``MAXLEN ~`` when ``maxlen`` is set), a batch in one Lua script;
- groups: ``XGROUP CREATE ... MKSTREAM``, an existing group (BUSYGROUP) is fine;
- delay: a sorted set ``<stream>:delayed`` (score = due time in ms) and one hash per
  message; a Lua script moves due messages into the stream atomically;
- consuming: :class:`~troupe.brokers.redis.session.RedisSession` (own pending with
  ``XPENDING``/``XCLAIM``, idle pending of dead consumers with ``XAUTOCLAIM``, new
  entries with ``XREADGROUP COUNT``; handler starts counted in the hash
  ``<stream>:attempts:<group>``).

Connection errors become :class:`BrokerConnectionError` so bridges fail and restart.
"""

from __future__ import annotations

import contextlib
import logging
import os
import time
from collections.abc import AsyncIterator, Sequence
from typing import Any

import redis.asyncio as aioredis
from redis import exceptions as rex

from troupe.backoff import Backoff

from ..base import (
    DEFAULT_RECONNECT,
    Broker,
    BrokerConnectionError,
    BrokerError,
    Capabilities,
    to_str,
)
from ..message import JSON, Message, Serializer, from_fields, to_fields
from ..options import check_client_options, check_maxlen, check_port
from ..session import ConsumerSession
from ..tail import Tail
from .publish import publish_once

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

# Append a batch in one round trip: KEYS[1] the stream; ARGV[1] maxlen or ''; then per
# message a field count n and n field/value pairs. Returns the entry ids in order.
# One EVALSHA per batch costs the client one command to pack and one reply to read,
# where a pipeline of XADDs costs one of each per message; the batch is atomic too.
_APPEND = """
local ids = {}
local maxlen = ARGV[1]
local i = 2
while i <= #ARGV do
  local n = tonumber(ARGV[i])
  local last = i + 2 * n
  if maxlen ~= '' then
    ids[#ids + 1] = redis.call(
      'XADD', KEYS[1], 'MAXLEN', '~', maxlen, '*', unpack(ARGV, i + 1, last))
  else
    ids[#ids + 1] = redis.call('XADD', KEYS[1], '*', unpack(ARGV, i + 1, last))
  end
  i = last + 1
end
return ids
"""

#: redis-py keywords the URL sets (host, port, db) or troupe manages
CLIENT_RESERVED = ("host", "port", "db", "connection_pool", "event_dispatcher")
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
        journal_dir: str | os.PathLike[str] | None = None,
        **client_options: Any,
    ) -> None:
        super().__init__(url, serializer=serializer, reconnect=reconnect, journal_dir=journal_dir)
        check_port(url)
        check_maxlen(maxlen)
        check_client_options(
            client_options, "redis-py", aioredis.Redis.__init__, reserved=CLIENT_RESERVED
        )
        self._raw_url = url
        self.maxlen = maxlen
        self._options = client_options
        self._client: aioredis.Redis | None = None
        self._promote: Any = None
        self._scripts: dict[str, Any] = {}

    @property
    def client(self) -> aioredis.Redis:
        """The redis-py client (made on first use)."""
        if self._client is None:
            options: dict[str, Any] = {"socket_connect_timeout": 5.0, "protocol": 2}
            options.update(self._options)
            self._client = aioredis.Redis.from_url(self._raw_url, **options)
            self._promote = self._client.register_script(_PROMOTE)
            self._scripts.clear()
        return self._client

    def script(self, source: str) -> Any:
        """A Lua script registered on the current client (cached per client)."""
        client = self.client
        found = self._scripts.get(source)
        if found is None:
            found = self._scripts[source] = client.register_script(source)
        return found

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
            args: list[Any] = ["" if self.maxlen is None else self.maxlen]
            append = args.append
            for message in messages:
                fields = to_fields(message)
                append(len(fields))
                for name, value in fields.items():
                    append(name)
                    append(value)
            ids: Any = await self.script(_APPEND)(keys=[stream], args=args)
        return [entry.decode() for entry in ids]

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

    async def broadcast(self, topic: str, messages: Sequence[Message]) -> None:
        from .tail import broadcast

        await broadcast(self, topic, messages)

    async def tail(self, topic: str) -> Tail:
        from .tail import RedisTail

        return await RedisTail.open(self, topic)

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

    async def consume(
        self,
        stream: str,
        group: str,
        consumer: str,
        *,
        window: int,
        claim_idle: float = 30.0,
        delay_poll: float = 0.05,
    ) -> ConsumerSession:
        from .session import RedisSession

        await self.connect()
        await self.ensure_group(stream, group)
        session = RedisSession(self, stream, group, consumer, window, claim_idle, delay_poll)
        try:
            await session.attempts.fold_dead()
        except BaseException:
            session.attempts.close()
            raise
        return session

    async def read_stream(self, stream: str, count: int = 1000) -> list[Message]:
        async with self._errors("XRANGE"):
            entries: Any = await self.client.xrange(stream, count=count)
        return [from_fields(fields, to_str(entry_id)) for entry_id, fields in entries]

    async def remove_dead(self, stream: str, message_id: str) -> bool:
        dlq = self.dlq(stream)
        async with self._errors("XRANGE"):
            entries: Any = await self.client.xrange(dlq)
        for entry_id, fields in entries:
            if from_fields(fields, to_str(entry_id)).id == message_id:
                async with self._errors("XDEL"):
                    return bool(await self.client.xdel(dlq, entry_id))
        return False

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
