"""Entity state and shard leases on Redis (see :mod:`troupe.brokers.state`).

- :class:`RedisStateStore`: one hash per entity type, ``<prefix>state:<kind>``, a field
  per key holding the position, a newline and the state's JSON. A fenced save is one Lua
  script that checks the shard's lease token and writes every record of the batch.
- :class:`RedisShardLeases`: a lease is ``<prefix>lease:<kind>:<shard>`` holding its
  fencing token (``INCR <prefix>lease:<kind>`` on every acquisition) with a TTL; live
  members are a sorted set scored by expiry.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import AsyncIterator, Mapping, Sequence
from typing import TYPE_CHECKING

from redis import exceptions as rex

from ..base import BrokerConnectionError, BrokerError
from ..state import Fence, Saved, ShardLeases, StateFenced, StateStore

if TYPE_CHECKING:
    from .broker import RedisBroker

_SAVE = """
if ARGV[1] ~= '' and redis.call('GET', KEYS[2]) ~= ARGV[1] then return 0 end
redis.call('HSET', KEYS[1], unpack(ARGV, 2))
return 1
"""

_ACQUIRE = """
if redis.call('EXISTS', KEYS[1]) == 1 then return false end
local token = redis.call('INCR', KEYS[2])
redis.call('SET', KEYS[1], token, 'PX', ARGV[1])
return token
"""

_RENEW = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
  redis.call('PEXPIRE', KEYS[1], ARGV[2])
  return 1
end
return 0
"""

_RELEASE = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
"""

_HEARTBEAT = """
redis.call('ZADD', KEYS[1], ARGV[2], ARGV[3])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', ARGV[1])
return redis.call('ZRANGE', KEYS[1], 0, -1)
"""


@contextlib.asynccontextmanager
async def _errors(broker: RedisBroker, what: str) -> AsyncIterator[None]:
    try:
        yield
    except (rex.ConnectionError, rex.TimeoutError, OSError) as exc:
        raise BrokerConnectionError(f"redis {what} on {broker.url} failed: {exc}") from exc
    except rex.RedisError as exc:
        raise BrokerError(f"redis {what} on {broker.url} failed: {exc}") from exc


class RedisStateStore(StateStore):
    """Entity records in one Redis hash per entity type, saved under a shard lease."""

    def __init__(self, broker: RedisBroker, *, prefix: str = "troupe:entity:") -> None:
        self.broker = broker
        self.prefix = prefix

    def key(self, kind: str) -> str:
        """The hash holding the records of ``kind``."""
        return f"{self.prefix}state:{kind}"

    async def load(self, kind: str, shard: int, keys: Sequence[str]) -> dict[str, Saved]:
        if not keys:
            return {}
        async with _errors(self.broker, f"load {kind} state"):
            values = await self.broker.client.hmget(self.key(kind), list(keys))
        out: dict[str, Saved] = {}
        for key, value in zip(keys, values, strict=True):
            if value is not None:
                text = value.decode() if isinstance(value, bytes) else str(value)
                position, _, state = text.partition("\n")
                out[key] = Saved(state, position)
        return out

    async def save(
        self, kind: str, shard: int, records: Mapping[str, Saved], fence: Fence | None = None
    ) -> None:
        if not records:
            return
        args: list[str | int] = [str(fence.token) if fence is not None else ""]
        for key, record in records.items():
            args += [key, f"{record.position}\n{record.state}"]
        lease = f"{self.prefix}lease:{kind}:{fence.shard if fence is not None else shard}"
        async with _errors(self.broker, f"save {kind} state"):
            done = await self.broker.script(_SAVE)(keys=[self.key(kind), lease], args=args)
        if not done:
            raise StateFenced(
                f"{kind} shard {shard}: lease {fence.token if fence else '-'} was lost; "
                "the state was not saved"
            )


class RedisShardLeases(ShardLeases):
    """Fenced shard leases and the live member list on Redis."""

    def __init__(self, broker: RedisBroker, *, prefix: str = "troupe:entity:") -> None:
        self.broker = broker
        self.prefix = prefix

    def _lease(self, kind: str, shard: int) -> str:
        return f"{self.prefix}lease:{kind}:{shard}"

    async def acquire(self, kind: str, shard: int, member: str, *, ttl: float) -> int | None:
        keys = [self._lease(kind, shard), f"{self.prefix}lease:{kind}"]
        async with _errors(self.broker, f"acquire {kind} shard {shard}"):
            token = await self.broker.script(_ACQUIRE)(keys=keys, args=[_ms(ttl)])
        return int(token) if token is not None else None

    async def renew(self, kind: str, shard: int, token: int, *, ttl: float) -> bool:
        async with _errors(self.broker, f"renew {kind} shard {shard}"):
            done = await self.broker.script(_RENEW)(
                keys=[self._lease(kind, shard)], args=[token, _ms(ttl)]
            )
        return bool(done)

    async def release(self, kind: str, shard: int, token: int) -> None:
        async with _errors(self.broker, f"release {kind} shard {shard}"):
            await self.broker.script(_RELEASE)(keys=[self._lease(kind, shard)], args=[token])

    async def heartbeat(self, kind: str, member: str, *, ttl: float) -> list[str]:
        now = time.time()
        async with _errors(self.broker, f"{kind} member heartbeat"):
            members = await self.broker.script(_HEARTBEAT)(
                keys=[f"{self.prefix}members:{kind}"], args=[now, now + ttl, member]
            )
        return sorted(m.decode() if isinstance(m, bytes) else str(m) for m in members)

    async def leave(self, kind: str, member: str) -> None:
        async with _errors(self.broker, f"{kind} member leave"):
            await self.broker.client.zrem(f"{self.prefix}members:{kind}", member)


def _ms(seconds: float) -> int:
    return max(1, int(seconds * 1000))


__all__ = ["RedisShardLeases", "RedisStateStore"]
