"""Idempotency stores: an atomic claim on a key, with a lease, a stored result and a TTL.

The protocol has no check-then-set window: ``claim`` decides atomically whether
the caller runs the effect (ACQUIRED), must wait or back off because another
holder's lease is live (IN_PROGRESS), or can reuse a stored result (DONE).
A holder keeps its lease while the effect runs by calling ``renew`` (a
heartbeat); a holder whose lease expired loses the key to the next claimer,
and its late ``renew``/``complete``/``release`` is ignored (the token no
longer matches).

What this guarantees: the claim makes duplicates wait or reuse the result,
so an effect is never run by two live holders at once. Whether it runs *at
most once* depends on where the effect lands. ``complete_with`` applies the
effect's writes to the store in the same atomic step as the completion: a
holder that dies before it leaves neither behind, so the effect happens at
most once (exactly once when some caller finishes). An effect elsewhere (an
HTTP call, another database) that succeeded before its holder died is run
again by the next claimer once the lease runs out: such an effect is only
*effectively* once if it is idempotent itself, for example by passing the
same key as the external API's idempotency key.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from enum import StrEnum
from typing import Any, Protocol


class ClaimState(StrEnum):
    """Outcome of a claim."""

    ACQUIRED = "acquired"  # the caller holds the lease and should run the effect
    IN_PROGRESS = "in_progress"  # someone else holds a live lease
    DONE = "done"  # the effect already ran; ``result`` holds what it returned


@dataclass(frozen=True, slots=True)
class Claim:
    """The answer to ``claim``: the state, the lease token (ACQUIRED) or result (DONE)."""

    state: ClaimState
    token: str | None = None
    result: bytes | None = None


class IdempotencyStore(Protocol):
    """Where idempotency keys live (memory or Redis); all methods are atomic."""

    async def claim(self, key: str, *, lease: float) -> Claim:
        """Try to take ``key`` for ``lease`` seconds."""
        ...

    async def complete(self, key: str, token: str, result: bytes, *, ttl: float) -> bool:
        """Mark the effect done and keep ``result`` for ``ttl`` seconds.

        Returns False when the lease was lost (expired and taken by another claimer).
        """
        ...

    async def release(self, key: str, token: str) -> bool:
        """Give the key up after a failure so a later attempt may run.

        Returns False when the lease was lost.
        """
        ...

    async def renew(self, key: str, token: str, *, lease: float) -> bool:
        """Extend a held lease to ``lease`` seconds from now (the holder's heartbeat).

        Returns False when the lease was lost.
        """
        ...


class AtomicIdempotencyStore(IdempotencyStore, Protocol):
    """A store that can commit an effect's writes together with the completion."""

    async def complete_with(
        self, key: str, token: str, result: bytes, *, ttl: float, effect: Callable[[Any], Any]
    ) -> bool:
        """Apply ``effect(transaction)`` and mark ``key`` done in one atomic step; False,
        with nothing applied, when the lease was lost. ``transaction`` is the store's
        handle (a Redis MULTI pipeline; None for the memory store)."""
        ...


@dataclass(slots=True)
class _Entry:
    token: str
    expires: float
    done: bool = False
    result: bytes | None = None


class MemoryIdempotencyStore:
    """An in-process IdempotencyStore (the embedded default); ``clock`` times leases.

    ``complete_with`` calls ``effect(None)`` and marks the key done with no await
    in between: atomic within this process, like the Redis store's transaction.
    """

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._entries: dict[str, _Entry] = {}

    async def claim(self, key: str, *, lease: float) -> Claim:
        now = self._clock()
        entry = self._entries.get(key)
        if entry is not None and entry.expires > now:
            if entry.done:
                return Claim(ClaimState.DONE, result=entry.result)
            return Claim(ClaimState.IN_PROGRESS)
        token = uuid.uuid4().hex
        self._entries[key] = _Entry(token, now + lease)
        return Claim(ClaimState.ACQUIRED, token=token)

    async def complete(self, key: str, token: str, result: bytes, *, ttl: float) -> bool:
        entry = self._held(key, token)
        if entry is None:
            return False
        entry.done = True
        entry.result = result
        entry.expires = self._clock() + ttl
        return True

    async def release(self, key: str, token: str) -> bool:
        if self._held(key, token) is None:
            return False
        del self._entries[key]
        return True

    async def renew(self, key: str, token: str, *, lease: float) -> bool:
        entry = self._held(key, token)
        if entry is None:
            return False
        entry.expires = self._clock() + lease
        return True

    async def complete_with(
        self, key: str, token: str, result: bytes, *, ttl: float, effect: Callable[[Any], Any]
    ) -> bool:
        entry = self._held(key, token)
        if entry is None:
            return False
        effect(None)
        entry.done = True
        entry.result = result
        entry.expires = self._clock() + ttl
        return True

    def _held(self, key: str, token: str) -> _Entry | None:
        """The entry when ``token`` still holds a live lease on ``key``."""
        entry = self._entries.get(key)
        if entry is None or entry.token != token or entry.done:
            return None
        if entry.expires <= self._clock():
            return None
        return entry

    def __len__(self) -> int:
        return len(self._entries)
