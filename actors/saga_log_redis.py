"""``RedisSagaLog``: saga records in Redis, so a saga outlives the orchestrator's process.

Each record is a JSON string at ``{prefix}{saga}:{id}``; a set per status
(``{prefix}{saga}:status:{status}``) finds the unfinished ones, a set
``{prefix}{saga}:outbox`` the finished ones whose outcome is not acknowledged.
An owner's lease is the key ``{prefix}owner:{owner}`` with a PX expiry, so
leases run on the Redis server's clock, the same for every host.
``create``, ``save`` (compare-and-set on version, owner and fence) and
``take_over`` (compare-and-set on version, refused while the owner's lease
key lives) are Lua scripts: record and indexes never disagree, and no write
lands between the check and the set.

>>> # log = RedisSagaLog(redis.asyncio.Redis.from_url("redis://127.0.0.1:6379/0"))
"""

from __future__ import annotations

import logging
from collections.abc import Collection, Iterable
from typing import Any

from redis.asyncio import Redis

from .saga_log import SagaFenced, SagaRecord, SagaStatus

logger = logging.getLogger(__name__)

# KEYS[1] record, KEYS[2] status set, KEYS[3] outbox; ARGV[1] json, ARGV[2] id, ARGV[3] outbox
_CREATE = """
if redis.call('SET', KEYS[1], ARGV[1], 'NX') then
  redis.call('SADD', KEYS[2], ARGV[2])
  if ARGV[3] == '1' then redis.call('SADD', KEYS[3], ARGV[2]) end
  return 1
end
return 0
"""

# Shared by save and take over: write ARGV[1] and move the id between the index sets.
# KEYS[1] record, KEYS[2] outbox, KEYS[3] target status set, KEYS[4..] other status sets
_WRITE = """
local function write()
  redis.call('SET', KEYS[1], ARGV[1])
  if ARGV[3] == '1' then
    redis.call('SADD', KEYS[2], ARGV[2])
  else
    redis.call('SREM', KEYS[2], ARGV[2])
  end
  for i = 4, #KEYS do
    redis.call('SREM', KEYS[i], ARGV[2])
  end
  redis.call('SADD', KEYS[3], ARGV[2])
end
"""

# ARGV[4] expected version, ARGV[5] owner, ARGV[6] fence
_SAVE = (
    _WRITE
    + """
local current = redis.call('GET', KEYS[1])
if not current then return 0 end
local doc = cjson.decode(current)
if doc.version ~= tonumber(ARGV[4]) or (doc.owner or '') ~= ARGV[5]
    or (doc.fence or 0) ~= tonumber(ARGV[6]) then
  return 0
end
write()
return 1
"""
)

# ARGV[4] expected version, ARGV[5] new owner, ARGV[6] owner-lease key prefix
_TAKE_OVER = (
    _WRITE
    + """
local current = redis.call('GET', KEYS[1])
if not current then return 0 end
local doc = cjson.decode(current)
if doc.version ~= tonumber(ARGV[4]) then return 0 end
local owner = doc.owner or ''
local finished = doc.status == 'completed' or doc.status == 'compensated'
  or doc.status == 'needs_attention'
local idle = finished and not doc.outcome_pending
if owner ~= ARGV[5] and owner ~= '' and not idle
    and redis.call('EXISTS', ARGV[6] .. owner) == 1 then
  return 0
end
write()
return 1
"""
)


class RedisSagaLog:
    """A SagaLog on Redis (redis-py's asyncio client); keys start with ``prefix``."""

    def __init__(self, client: Redis, *, prefix: str = "troupe:saga:") -> None:
        self.client = client
        self.prefix = prefix
        self._create = client.register_script(_CREATE)
        self._save = client.register_script(_SAVE)
        self._take_over = client.register_script(_TAKE_OVER)

    def _record_key(self, saga: str, saga_id: str) -> str:
        return f"{self.prefix}{saga}:{saga_id}"

    def _status_key(self, saga: str, status: SagaStatus) -> str:
        return f"{self.prefix}{saga}:status:{status.value}"

    def _outbox_key(self, saga: str) -> str:
        return f"{self.prefix}{saga}:outbox"

    def _owner_key(self, owner: str) -> str:
        return f"{self.prefix}owner:{owner}"

    def _write_keys(self, record: SagaRecord) -> list[str]:
        others = [self._status_key(record.saga, s) for s in SagaStatus if s is not record.status]
        return [
            self._record_key(record.saga, record.saga_id),
            self._outbox_key(record.saga),
            self._status_key(record.saga, record.status),
            *others,
        ]

    async def create(self, record: SagaRecord) -> bool:
        keys = [
            self._record_key(record.saga, record.saga_id),
            self._status_key(record.saga, record.status),
            self._outbox_key(record.saga),
        ]
        args = [record.to_json(), record.saga_id, "1" if record.outcome_pending else "0"]
        created: Any = await self._create(keys=keys, args=args)
        return bool(created)

    async def save(self, record: SagaRecord) -> None:
        args = [
            record.to_json(),
            record.saga_id,
            "1" if record.outcome_pending else "0",
            record.version - 1,
            record.owner,
            record.fence,
        ]
        if not await self._save(keys=self._write_keys(record), args=args):
            raise SagaFenced(record.saga, record.saga_id, record.owner, record.version)

    async def take_over(self, record: SagaRecord, owner: str) -> SagaRecord | None:
        taken = record.copy()
        taken.owner = owner
        taken.fence += 1
        taken.version += 1
        args = [
            taken.to_json(),
            taken.saga_id,
            "1" if taken.outcome_pending else "0",
            record.version,
            owner,
            self._owner_key(""),
        ]
        if not await self._take_over(keys=self._write_keys(taken), args=args):
            return None
        return taken

    async def renew(self, owner: str, lease: float) -> None:
        await self.client.set(self._owner_key(owner), b"1", px=max(1, int(lease * 1000)))

    async def release(self, owner: str) -> None:
        await self.client.delete(self._owner_key(owner))

    async def live(self, owners: Collection[str]) -> set[str]:
        ordered = sorted(owners)
        if not ordered:
            return set()
        values: list[Any] = await self.client.mget([self._owner_key(o) for o in ordered])
        return {owner for owner, value in zip(ordered, values, strict=True) if value is not None}

    async def load(self, saga: str, saga_id: str) -> SagaRecord | None:
        text: bytes | str | None = await self.client.get(self._record_key(saga, saga_id))
        return None if text is None else SagaRecord.from_json(text)

    async def records(self, saga: str, statuses: Iterable[SagaStatus]) -> list[SagaRecord]:
        ids: set[str] = set()
        for status in statuses:
            members: set[bytes | str] = await self.client.smembers(self._status_key(saga, status))
            ids.update(m.decode() if isinstance(m, bytes) else m for m in members)
        return await self._load_many(saga, ids)

    async def outbox(self, saga: str) -> list[SagaRecord]:
        members: set[bytes | str] = await self.client.smembers(self._outbox_key(saga))
        return await self._load_many(
            saga, {m.decode() if isinstance(m, bytes) else m for m in members}
        )

    async def _load_many(self, saga: str, ids: set[str]) -> list[SagaRecord]:
        if not ids:
            return []
        ordered = sorted(ids)
        texts: list[bytes | str | None] = await self.client.mget(
            [self._record_key(saga, saga_id) for saga_id in ordered]
        )
        return [SagaRecord.from_json(text) for text in texts if text is not None]
