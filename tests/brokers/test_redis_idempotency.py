"""The Redis idempotency store: the same protocol as the memory store, atomic under races."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import pytest
import redis.asyncio as aioredis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from troupe.brokers import ClaimState, IdempotencyStore, MemoryIdempotencyStore
from troupe.brokers.redis.idempotency import RedisIdempotencyStore


@pytest.fixture(params=["memory", "redis"])
async def store(request: pytest.FixtureRequest) -> AsyncIterator[IdempotencyStore]:
    if request.param == "memory":
        yield MemoryIdempotencyStore()
        return
    client = aioredis.Redis.from_url(request.getfixturevalue("redis_url"))
    yield RedisIdempotencyStore(client)
    await client.aclose()


async def test_claim_complete_replay(store: IdempotencyStore) -> None:
    first = await store.claim("k", lease=5)
    assert first.state is ClaimState.ACQUIRED and first.token
    assert (await store.claim("k", lease=5)).state is ClaimState.IN_PROGRESS
    assert await store.complete("k", first.token, b"result", ttl=60)
    replay = await store.claim("k", lease=5)
    assert replay.state is ClaimState.DONE
    assert replay.result == b"result"
    assert not await store.complete("k", first.token, b"again", ttl=60)


async def test_release_lets_a_later_attempt_run(store: IdempotencyStore) -> None:
    first = await store.claim("k", lease=5)
    assert first.token
    assert await store.release("k", first.token)
    second = await store.claim("k", lease=5)
    assert second.state is ClaimState.ACQUIRED
    assert not await store.release("k", first.token)  # a stale token changes nothing


async def test_renew_extends_only_a_held_lease(store: IdempotencyStore) -> None:
    first = await store.claim("k", lease=0.1)
    assert first.token
    for _ in range(3):
        await asyncio.sleep(0.05)
        assert await store.renew("k", first.token, lease=0.1)  # a heartbeat
    assert (await store.claim("k", lease=5)).state is ClaimState.IN_PROGRESS
    await asyncio.sleep(0.15)  # no heartbeat: the lease runs out
    assert not await store.renew("k", first.token, lease=5)
    second = await store.claim("k", lease=5)
    assert second.state is ClaimState.ACQUIRED and second.token
    assert not await store.renew("k", first.token, lease=5)  # a stale token changes nothing
    assert await store.complete("k", second.token, b"r", ttl=60)
    assert not await store.renew("k", second.token, lease=5)  # done: nothing to renew


async def test_an_expired_lease_is_lost(redis_url: str) -> None:
    client = aioredis.Redis.from_url(redis_url)
    store = RedisIdempotencyStore(client)
    first = await store.claim("k", lease=0.05)
    await asyncio.sleep(0.1)
    second = await store.claim("k", lease=5)
    assert second.state is ClaimState.ACQUIRED
    assert first.token
    assert not await store.complete("k", first.token, b"late", ttl=60)
    assert not await store.complete_with(
        "k", first.token, b"late", ttl=60, effect=lambda p: p.incr("effect")
    )
    assert await client.get("effect") is None
    await client.aclose()


async def test_done_entries_expire_after_their_ttl(redis_url: str) -> None:
    client = aioredis.Redis.from_url(redis_url)
    store = RedisIdempotencyStore(client)
    claim = await store.claim("k", lease=5)
    assert claim.token
    assert await store.complete("k", claim.token, b"r", ttl=0.05)
    await asyncio.sleep(0.1)
    assert (await store.claim("k", lease=5)).state is ClaimState.ACQUIRED
    await client.aclose()


@settings(suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(workers=st.integers(min_value=2, max_value=8), keys=st.integers(min_value=1, max_value=5))
def test_concurrent_duplicates_run_the_effect_once(redis_url: str, workers: int, keys: int) -> None:
    async def scenario() -> None:
        client = aioredis.Redis.from_url(redis_url)
        await client.flushall()
        store = RedisIdempotencyStore(client)

        async def worker() -> None:
            for key in range(keys):
                while True:
                    claim = await store.claim(str(key), lease=5)
                    if claim.state is ClaimState.DONE:
                        break
                    if claim.state is ClaimState.IN_PROGRESS:
                        await asyncio.sleep(0.001)
                        continue
                    assert claim.token
                    await store.complete_with(
                        str(key),
                        claim.token,
                        b"ok",
                        ttl=60,
                        effect=lambda p, k=key: p.hincrby("effects", str(k), 1),
                    )

        await asyncio.gather(*(worker() for _ in range(workers)))
        effects = await client.hgetall("effects")
        assert {int(k): int(v) for k, v in effects.items()} == dict.fromkeys(range(keys), 1)
        await client.aclose()

    asyncio.run(scenario())


def test_redis_idempotency_store_state_machine(redis_url: str) -> None:
    """The memory store's state machine, shorter, on Redis: leases are long (Redis's
    clock) and run out when the test deletes the lease key, as PX expiry would."""
    import redis as sync_redis
    from hypothesis.stateful import run_state_machine_as_test

    from ..actors.test_idempotency_properties import IdempotencyMachine

    class RedisIdempotencyMachine(IdempotencyMachine):
        lease = 60.0

        def __init__(self) -> None:
            sync_redis.Redis.from_url(redis_url).flushdb()
            self.client = aioredis.Redis.from_url(redis_url)
            super().__init__(RedisIdempotencyStore(self.client), lambda: 0.0, self.client.aclose)

        def expire(self, key: str) -> None:
            self.run(self.client.delete(f"troupe:idem:{key}"))
            self.keys[key].expires = 0.0

        def apply(self, transaction: Any, key: str) -> None:
            transaction.hincrby("atomic-effects", key, 1)

        async def sync_effects(self) -> None:
            applied = await self.client.hgetall("atomic-effects")
            self.atomic_effects.clear()
            self.atomic_effects.update({k.decode(): int(v) for k, v in applied.items()})

    run_state_machine_as_test(
        RedisIdempotencyMachine, settings=settings(max_examples=15, stateful_step_count=25)
    )
