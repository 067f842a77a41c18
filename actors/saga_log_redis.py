"""``RedisSagaLog``: saga records in Redis, so a saga outlives the orchestrator's process.

Each record is a JSON string at ``{prefix}{saga}:{id}``; a set per status
(``{prefix}{saga}:status:{status}``) finds the unfinished ones on start.
``create`` (SET NX plus the index) and ``save`` (SET plus moving the id
between status sets) are Lua scripts, so record and index never disagree.

>>> # log = RedisSagaLog(redis.asyncio.Redis.from_url("redis://127.0.0.1:6379/0"))
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from typing import Any

from redis.asyncio import Redis

from .saga_log import SagaRecord, SagaStatus

logger = logging.getLogger(__name__)

_CREATE = """
if redis.call('SET', KEYS[1], ARGV[1], 'NX') then
  redis.call('SADD', KEYS[2], ARGV[2])
  return 1
end
return 0
"""

# KEYS[1] record, KEYS[2] target status set, KEYS[3..] the other status sets
_SAVE = """
redis.call('SET', KEYS[1], ARGV[1])
for i = 3, #KEYS do
  redis.call('SREM', KEYS[i], ARGV[2])
end
redis.call('SADD', KEYS[2], ARGV[2])
return 1
"""


class RedisSagaLog:
    """A SagaLog on Redis (redis-py's asyncio client); keys start with ``prefix``."""

    def __init__(self, client: Redis, *, prefix: str = "troupe:saga:") -> None:
        self.client = client
        self.prefix = prefix
        self._create = client.register_script(_CREATE)
        self._save = client.register_script(_SAVE)

    def _record_key(self, saga: str, saga_id: str) -> str:
        return f"{self.prefix}{saga}:{saga_id}"

    def _status_key(self, saga: str, status: SagaStatus) -> str:
        return f"{self.prefix}{saga}:status:{status.value}"

    async def create(self, record: SagaRecord) -> bool:
        keys = [
            self._record_key(record.saga, record.saga_id),
            self._status_key(record.saga, record.status),
        ]
        created: Any = await self._create(keys=keys, args=[record.to_json(), record.saga_id])
        return bool(created)

    async def save(self, record: SagaRecord) -> None:
        others = [self._status_key(record.saga, s) for s in SagaStatus if s is not record.status]
        keys = [
            self._record_key(record.saga, record.saga_id),
            self._status_key(record.saga, record.status),
            *others,
        ]
        await self._save(keys=keys, args=[record.to_json(), record.saga_id])

    async def load(self, saga: str, saga_id: str) -> SagaRecord | None:
        text: bytes | str | None = await self.client.get(self._record_key(saga, saga_id))
        return None if text is None else SagaRecord.from_json(text)

    async def records(self, saga: str, statuses: Iterable[SagaStatus]) -> list[SagaRecord]:
        ids: set[str] = set()
        for status in statuses:
            members: set[bytes | str] = await self.client.smembers(self._status_key(saga, status))
            ids.update(m.decode() if isinstance(m, bytes) else m for m in members)
        if not ids:
            return []
        ordered = sorted(ids)
        texts: list[bytes | str | None] = await self.client.mget(
            [self._record_key(saga, saga_id) for saga_id in ordered]
        )
        return [SagaRecord.from_json(text) for text in texts if text is not None]
