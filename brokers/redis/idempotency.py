"""``RedisIdempotencyStore``: the IdempotencyStore protocol on Redis.

A key holds ``L:<token>`` while a lease is live (``SET NX PX lease``) and
``D:<result>`` once done (kept ``ttl`` seconds for replays). Claim, complete
and release are Lua scripts, so no caller ever sees a check-then-set window;
a holder whose lease expired cannot complete or release (its token no longer
matches).

``renew`` extends a held lease (``PEXPIRE`` if the token still matches).
``complete_with`` commits Redis writes of the effect together with the
completion (WATCH/MULTI/EXEC): if the process dies before it, neither the
effect nor the completion happened, so the effect happens at most once, and
exactly once when a later claimer finishes.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Callable
from typing import Any

from redis import exceptions as rex
from redis.asyncio import Redis
from redis.asyncio.client import Pipeline

from ..idempotency import Claim, ClaimState

logger = logging.getLogger(__name__)

_CLAIM = """
if redis.call('SET', KEYS[1], 'L:' .. ARGV[1], 'NX', 'PX', ARGV[2]) then
  return {1, ARGV[1]}
end
local v = redis.call('GET', KEYS[1])
if string.sub(v, 1, 2) == 'D:' then
  return {2, string.sub(v, 3)}
end
return {3, ''}
"""

_COMPLETE = """
if redis.call('GET', KEYS[1]) == 'L:' .. ARGV[1] then
  redis.call('SET', KEYS[1], 'D:' .. ARGV[2], 'PX', ARGV[3])
  return 1
end
return 0
"""

_RELEASE = """
if redis.call('GET', KEYS[1]) == 'L:' .. ARGV[1] then
  redis.call('DEL', KEYS[1])
  return 1
end
return 0
"""

_RENEW = """
if redis.call('GET', KEYS[1]) == 'L:' .. ARGV[1] then
  redis.call('PEXPIRE', KEYS[1], ARGV[2])
  return 1
end
return 0
"""

_STATES = {1: ClaimState.ACQUIRED, 2: ClaimState.DONE, 3: ClaimState.IN_PROGRESS}


class RedisIdempotencyStore:
    """An IdempotencyStore on Redis; keys are ``prefix + key``.

    >>> # store = RedisIdempotencyStore(redis.asyncio.Redis.from_url(url))
    >>> # claim = await store.claim("order-7", lease=30)
    """

    def __init__(self, client: Redis, *, prefix: str = "troupe:idem:") -> None:
        self.client = client
        self.prefix = prefix
        self._claim = client.register_script(_CLAIM)
        self._complete = client.register_script(_COMPLETE)
        self._release = client.register_script(_RELEASE)
        self._renew = client.register_script(_RENEW)

    def _key(self, key: str) -> str:
        return self.prefix + key

    async def claim(self, key: str, *, lease: float) -> Claim:
        token = uuid.uuid4().hex
        code, value = await self._claim(keys=[self._key(key)], args=[token, _ms(lease)])
        state = _STATES[int(code)]
        if state is ClaimState.ACQUIRED:
            return Claim(state, token=token)
        if state is ClaimState.DONE:
            return Claim(state, result=bytes(value))
        return Claim(state)

    async def complete(self, key: str, token: str, result: bytes, *, ttl: float) -> bool:
        done = await self._complete(keys=[self._key(key)], args=[token, result, _ms(ttl)])
        return bool(done)

    async def release(self, key: str, token: str) -> bool:
        return bool(await self._release(keys=[self._key(key)], args=[token]))

    async def renew(self, key: str, token: str, *, lease: float) -> bool:
        return bool(await self._renew(keys=[self._key(key)], args=[token, _ms(lease)]))

    async def complete_with(
        self,
        key: str,
        token: str,
        result: bytes,
        *,
        ttl: float,
        effect: Callable[[Pipeline], Any],
    ) -> bool:
        """Apply ``effect`` (commands queued on a MULTI pipeline) and complete, atomically.

        Returns False, with nothing applied, when the lease was lost.
        """
        name = self._key(key)
        async with self.client.pipeline(transaction=True) as pipe:
            try:
                await pipe.watch(name)
                current = await pipe.get(name)
                if current != b"L:" + token.encode():
                    await pipe.unwatch()  # type: ignore[no-untyped-call]
                    return False
                pipe.multi()  # type: ignore[no-untyped-call]
                effect(pipe)
                pipe.set(name, b"D:" + result, px=_ms(ttl))
                await pipe.execute()
            except rex.WatchError:
                return False
        return True


def _ms(seconds: float) -> int:
    return max(1, int(seconds * 1000))


__all__ = ["RedisIdempotencyStore"]
