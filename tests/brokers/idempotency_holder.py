"""A key holder for the kill -9 tests: ``python idempotency_holder.py URL MODE KEYS``.

``plain``: claims each key with ``Idempotent.run`` (default lease) and runs an
effect that increments ``effects`` in Redis, then hangs before completing.
``atomic``: the effect returns ``Atomic`` (the increment commits with the
completion); it hangs after computing and before returning on the first key,
or (``atomic-stream``) runs the keys in a random order with a short pause so
the parent's kill -9 lands anywhere. Progress goes to the list ``holder:log``.
"""

from __future__ import annotations

import asyncio
import random
import sys
from typing import Any

from redis.asyncio import Redis

from troupe.actors.idempotency import Atomic, Idempotent
from troupe.brokers.redis.idempotency import RedisIdempotencyStore


async def main(url: str, mode: str, keys: int) -> None:
    client = Redis.from_url(url)
    guard = Idempotent(RedisIdempotencyStore(client))

    order = list(range(keys))
    if mode == "atomic-stream":
        random.shuffle(order)  # several holders contend for the same keys in their own order
    for n in order:
        key = f"k{n}"

        async def plain(key: str = key) -> str:
            await client.hincrby("effects", key, 1)
            await client.rpush("holder:log", f"applied {key}")
            await asyncio.sleep(3600)  # dies here, before marking the key done
            return "never"

        async def atomic(key: str = key) -> Atomic:
            await client.rpush("holder:log", f"computed {key}")
            if mode == "atomic":
                await asyncio.sleep(3600)  # dies after the effect's work, before the commit
            else:
                await asyncio.sleep(0.002)
            return Atomic(f"done {key}", lambda pipe, key=key: pipe.hincrby("effects", key, 1))

        effect: Any = plain if mode == "plain" else atomic
        await guard.run(key, effect)
        await client.rpush("holder:log", f"completed {key}")


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], sys.argv[2], int(sys.argv[3])))
