"""Entity state and shard leases on a real Redis: fenced saves, lease handover, members."""

from __future__ import annotations

import asyncio

import pytest

from troupe.brokers import connect
from troupe.brokers.redis import RedisShardLeases, RedisStateStore
from troupe.brokers.state import Fence, Saved, StateFenced


async def test_a_save_under_a_lost_lease_is_refused_and_writes_nothing(redis_url: str) -> None:
    broker = connect(redis_url)
    leases, store = RedisShardLeases(broker), RedisStateStore(broker)
    try:
        old = await leases.acquire("cart", 3, "a", ttl=0.2)
        assert old is not None
        assert await leases.acquire("cart", 3, "b", ttl=5) is None  # held
        await store.save("cart", 3, {"k": Saved('{"n": 1}', "1-0")}, Fence(3, old))
        await asyncio.sleep(0.3)  # a's lease runs out; b takes the shard
        new = await leases.acquire("cart", 3, "b", ttl=5)
        assert new is not None and new > old
        assert not await leases.renew("cart", 3, old, ttl=5)
        with pytest.raises(StateFenced):
            await store.save("cart", 3, {"k": Saved('{"n": 99}', "9-0")}, Fence(3, old))
        await store.save("cart", 3, {"k": Saved('{"n": 2}', "2-0")}, Fence(3, new))
        assert await store.load("cart", 3, ["k", "absent"]) == {"k": Saved('{"n": 2}', "2-0")}
        await leases.release("cart", 3, old)  # ignored: not the lease any more
        assert await leases.renew("cart", 3, new, ttl=5)
    finally:
        await broker.close()


async def test_members_are_listed_while_they_heartbeat(redis_url: str) -> None:
    broker = connect(redis_url)
    leases = RedisShardLeases(broker)
    try:
        await leases.heartbeat("cart", "a", ttl=0.2)
        assert await leases.heartbeat("cart", "b", ttl=5) == ["a", "b"]
        await asyncio.sleep(0.3)
        assert await leases.heartbeat("cart", "b", ttl=5) == ["b"]
        await leases.leave("cart", "b")
        assert await leases.heartbeat("cart", "c", ttl=5) == ["c"]
    finally:
        await broker.close()
