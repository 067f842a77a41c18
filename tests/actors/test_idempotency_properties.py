"""The idempotency store under interleavings: holders that claim, run effects, renew,
complete (plain or atomically with the effect), release, crash, and leases that
run out. Memory here on a fake clock; a shorter run on Redis in tests/brokers.

Invariants: a claim's answer matches the model (one live holder per key); a
stale token never renews, completes or releases; an atomic effect is applied
at most once per key, and exactly once for a key marked done by it.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from typing import Any, TypeVar

from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, rule, run_state_machine_as_test

from troupe.brokers.idempotency import ClaimState, MemoryIdempotencyStore

T = TypeVar("T")
HOLDERS = ["h1", "h2", "h3"]
KEYS = ["k0", "k1"]


@dataclass
class Key:
    """The model of one key."""

    holder: str | None = None  # token of the live lease
    expires: float = 0.0
    done_by: str | None = None  # token that completed it


class IdempotencyMachine(RuleBasedStateMachine):
    """Holders racing over one store; subclasses supply the store, clock and expiry."""

    lease = 10.0

    def __init__(self, store: Any, now: Callable[[], float], close: Callable[[], Any]) -> None:
        super().__init__()
        self.loop = asyncio.new_event_loop()
        self.store = store
        self.now = now
        self._close = close
        self.keys = {k: Key() for k in KEYS}
        self.tokens: dict[tuple[str, str], str] = {}  # (holder, key) -> token it holds
        self.atomic_effects: Counter[str] = Counter()
        self.plain_effects: Counter[str] = Counter()

    def run(self, coro: Coroutine[Any, Any, T]) -> T:
        return self.loop.run_until_complete(coro)

    def teardown(self) -> None:
        result = self._close()
        if asyncio.iscoroutine(result):
            self.run(result)
        self.loop.close()

    def live_holder(self, key: str) -> str | None:
        model = self.keys[key]
        if model.done_by is None and model.holder is not None and model.expires > self.now():
            return model.holder
        return None

    def expire(self, key: str) -> None:
        """Make ``key``'s lease run out (subclasses)."""
        raise NotImplementedError

    @rule(holder=st.sampled_from(HOLDERS), key=st.sampled_from(KEYS))
    def claim(self, holder: str, key: str) -> None:
        model = self.keys[key]
        claim = self.run(self.store.claim(key, lease=self.lease))
        if model.done_by is not None:
            assert claim.state is ClaimState.DONE and claim.result == key.encode()
        elif self.live_holder(key) is not None:
            assert claim.state is ClaimState.IN_PROGRESS
        else:
            assert claim.state is ClaimState.ACQUIRED and claim.token
            model.holder, model.expires = claim.token, self.now() + self.lease
            self.tokens[(holder, key)] = claim.token

    @rule(holder=st.sampled_from(HOLDERS), key=st.sampled_from(KEYS))
    def renew(self, holder: str, key: str) -> None:
        token = self.tokens.get((holder, key))
        if token is None:
            return
        held = self.run(self.store.renew(key, token, lease=self.lease))
        assert held == (self.live_holder(key) == token)
        if held:
            self.keys[key].expires = self.now() + self.lease

    @rule(holder=st.sampled_from(HOLDERS), key=st.sampled_from(KEYS), atomic=st.booleans())
    def complete(self, holder: str, key: str, atomic: bool) -> None:
        token = self.tokens.pop((holder, key), None)
        if token is None:
            return
        expected = self.live_holder(key) == token
        if atomic:
            done = self.run(self.complete_atomically(key, token))
        else:
            self.plain_effects[key] += 1  # the effect ran elsewhere, then the completion
            done = self.run(self.store.complete(key, token, key.encode(), ttl=1000))
        assert done == expected, "a stale token completed" if done else "the holder was refused"
        if done:
            self.keys[key].done_by = token

    async def complete_atomically(self, key: str, token: str) -> bool:
        done: bool = await self.store.complete_with(
            key, token, key.encode(), ttl=1000, effect=lambda tx: self.apply(tx, key)
        )
        await self.sync_effects()
        return done

    def apply(self, transaction: Any, key: str) -> None:
        self.atomic_effects[key] += 1

    async def sync_effects(self) -> None:
        """Read back effects applied inside the store (Redis), if any."""

    @rule(holder=st.sampled_from(HOLDERS), key=st.sampled_from(KEYS))
    def release(self, holder: str, key: str) -> None:
        token = self.tokens.pop((holder, key), None)
        if token is None:
            return
        expected = self.live_holder(key) == token
        assert self.run(self.store.release(key, token)) == expected
        if expected:
            self.keys[key].holder = None

    @rule(holder=st.sampled_from(HOLDERS))
    def crash(self, holder: str) -> None:
        """kill -9: the holder forgets its tokens; its leases stay until they run out."""
        for key in KEYS:
            self.tokens.pop((holder, key), None)

    @rule(key=st.sampled_from(KEYS))
    def lease_runs_out(self, key: str) -> None:
        if self.live_holder(key) is not None:
            self.expire(key)

    @invariant()
    def atomic_effects_happen_once_for_what_they_completed(self) -> None:
        for key in KEYS:
            assert self.atomic_effects[key] <= 1
            if self.atomic_effects[key]:
                assert self.keys[key].done_by is not None


class MemoryIdempotencyMachine(IdempotencyMachine):
    def __init__(self) -> None:
        self.clock = [0.0]
        super().__init__(
            MemoryIdempotencyStore(clock=lambda: self.clock[0]), lambda: self.clock[0], _nothing
        )

    def expire(self, key: str) -> None:
        self.clock[0] = max(self.clock[0], self.keys[key].expires)

    @rule(seconds=st.sampled_from([1.0, 4.0]))
    def time_passes(self, seconds: float) -> None:
        self.clock[0] += seconds


def _nothing() -> None:
    return None


def test_memory_idempotency_store_state_machine() -> None:
    run_state_machine_as_test(MemoryIdempotencyMachine, settings=settings(stateful_step_count=40))
