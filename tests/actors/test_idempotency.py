"""Idempotent: atomic claim, stored result, release on failure; duplicates run the effect once."""

from __future__ import annotations

import asyncio
from collections import Counter
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from troupe import ActorSystem
from troupe.actors.idempotency import Atomic, Deduplicate, Idempotent, LeaseLost, StillInProgress
from troupe.brokers.idempotency import MemoryIdempotencyStore

from .helpers import Recorder


async def test_concurrent_duplicates_run_the_effect_once_and_share_its_result() -> None:
    guard = Idempotent(MemoryIdempotencyStore())
    runs: list[str] = []

    async def effect(value: str) -> dict[str, str]:
        runs.append(value)
        await asyncio.sleep(0.01)
        return {"value": value}

    results = await asyncio.gather(*(guard.run("k", effect, f"v{i}") for i in range(5)))
    assert len(runs) == 1
    assert all(r == {"value": runs[0]} for r in results)
    assert guard.stats.executed == 1 and guard.stats.suppressed == 4 and guard.stats.waited == 4


async def test_failure_releases_the_key_so_a_retry_runs() -> None:
    guard = Idempotent(MemoryIdempotencyStore())
    calls = 0

    def effect() -> int:
        nonlocal calls
        calls += 1
        if calls == 1:
            raise ConnectionError("down")
        return calls

    with pytest.raises(ConnectionError):
        await guard.run("k", effect)
    assert await guard.run("k", effect) == 2
    assert await guard.run("k", effect) == 2  # stored, not run again
    assert calls == 2 and guard.stats.failed == 1


async def test_a_duplicate_gives_up_waiting_for_a_stuck_holder() -> None:
    store = MemoryIdempotencyStore()
    guard = Idempotent(store, lease=30, wait=0.02)
    await store.claim("stuck", lease=30)  # someone else holds it and never finishes
    with pytest.raises(StillInProgress, match="stuck"):
        await guard.run("stuck", lambda: None)


async def test_deduplicate_actor_forwards_each_key_once() -> None:
    async with ActorSystem() as system:
        seen: list[Any] = []
        target = system.spawn(Recorder, seen)
        guard = Idempotent(MemoryIdempotencyStore(), sleep=system.clock.sleep)
        front = system.spawn(Deduplicate, target, guard, lambda m: m["id"])
        replies = [await front.ask({"id": i % 3, "n": i}) for i in range(7)]
        assert [m["n"] for m in seen] == [0, 1, 2]
        assert replies[3] == {"id": 0, "n": 0}


@given(
    submissions=st.lists(
        st.tuples(
            st.sampled_from(["a", "b", "c"]),  # key
            st.booleans(),  # this attempt fails
            st.integers(0, 5),  # loop turns before it starts
            st.integers(0, 5),  # loop turns the effect takes
        ),
        min_size=1,
        max_size=12,
    )
)
def test_property_any_interleaving_of_duplicates_and_failures_runs_each_effect_once(
    submissions: list[tuple[str, bool, int, int]],
) -> None:
    effects: Counter[str] = Counter()

    async def submit(guard: Idempotent, key: str, fails: bool, delay: int, work: int) -> Any:
        for _ in range(delay):
            await asyncio.sleep(0)

        async def effect() -> str:
            for _ in range(work):
                await asyncio.sleep(0)
            if fails:
                raise RuntimeError("transient")
            effects[key] += 1
            return f"done-{key}"

        return await guard.run(key, effect)

    async def scenario() -> None:
        guard = Idempotent(MemoryIdempotencyStore())
        results = await asyncio.gather(
            *(submit(guard, *s) for s in submissions), return_exceptions=True
        )
        for key in {s[0] for s in submissions}:
            succeeds = any(not fails for k, fails, _, _ in submissions if k == key)
            assert effects[key] == (1 if succeeds else 0)
        for (key, fails, _, _), result in zip(submissions, results, strict=True):
            if not fails:
                assert result == f"done-{key}"
            else:
                assert isinstance(result, RuntimeError) or result == f"done-{key}"

    asyncio.run(scenario())


async def test_an_expired_lease_is_taken_over_and_the_late_holder_cannot_complete() -> None:
    now = [0.0]
    store = MemoryIdempotencyStore(clock=lambda: now[0])
    first = Idempotent(store, lease=1.0)
    second = Idempotent(store, lease=1.0)
    started = asyncio.Event()
    release = asyncio.Event()

    async def slow() -> str:
        started.set()
        await release.wait()
        return "slow"

    holder = asyncio.create_task(first.run("k", slow))
    await started.wait()
    now[0] = 5.0  # the holder's lease ran out (it hung, or its process died)
    assert await second.run("k", lambda: "taken over") == "taken over"
    release.set()
    assert await holder == "slow"
    assert first.stats.lost_leases == 1  # its completion was refused, and counted
    assert await second.run("k", lambda: "again") == "taken over"


async def test_a_heartbeat_keeps_the_key_while_a_long_effect_runs() -> None:
    store = MemoryIdempotencyStore()
    holder = Idempotent(store, lease=0.15)
    duplicate = Idempotent(store, lease=0.15, wait=5)
    runs: list[str] = []

    async def long_effect(who: str) -> str:
        runs.append(who)
        await asyncio.sleep(0.6)  # four leases long: renewed every 0.05 s
        return who

    first = asyncio.create_task(holder.run("k", long_effect, "first"))
    await asyncio.sleep(0.01)
    assert await duplicate.run("k", long_effect, "second") == "first"
    assert await first == "first"
    assert runs == ["first"] and holder.stats.lost_leases == 0


async def test_atomic_effects_commit_with_the_completion_or_not_at_all() -> None:
    now = [0.0]
    store = MemoryIdempotencyStore(clock=lambda: now[0])
    ledger: list[str] = []
    guard = Idempotent(store, lease=1.0)

    def charge(who: str) -> Atomic:
        return Atomic({"charged": who}, lambda _: ledger.append(who))

    assert await guard.run("k", charge, "ada") == {"charged": "ada"}
    assert await guard.run("k", charge, "bob") == {"charged": "ada"}
    assert ledger == ["ada"]

    started, release = asyncio.Event(), asyncio.Event()

    async def slow_charge() -> Atomic:
        started.set()
        await release.wait()
        return Atomic("late", lambda _: ledger.append("late"))

    late = asyncio.create_task(Idempotent(store, lease=1.0, sleep=_never).run("j", slow_charge))
    await started.wait()
    now[0] = 5.0  # the holder's lease ran out (no heartbeat got through)
    assert await guard.run("j", charge, "cy") == {"charged": "cy"}
    release.set()
    with pytest.raises(LeaseLost):
        await late  # its writes were not applied
    assert ledger == ["ada", "cy"]


async def _never(seconds: float) -> None:
    await asyncio.Event().wait()


async def test_atomic_needs_a_store_that_can_commit_it() -> None:
    class PlainStore:
        def __init__(self) -> None:
            self.inner = MemoryIdempotencyStore()

        async def claim(self, key: str, *, lease: float) -> Any:
            return await self.inner.claim(key, lease=lease)

        async def complete(self, key: str, token: str, result: bytes, *, ttl: float) -> bool:
            return await self.inner.complete(key, token, result, ttl=ttl)

        async def release(self, key: str, token: str) -> bool:
            return await self.inner.release(key, token)

        async def renew(self, key: str, token: str, *, lease: float) -> bool:
            return await self.inner.renew(key, token, lease=lease)

    with pytest.raises(TypeError, match="complete_with"):
        await Idempotent(PlainStore()).run("k", lambda: Atomic(1, lambda _: None))
