"""Idempotency stores: an atomic claim on a key, with a lease, a stored result and a TTL.

The protocol has no check-then-set window: ``claim`` decides atomically whether
the caller runs the effect (ACQUIRED), must wait or back off because another
holder's lease is live (IN_PROGRESS), or can reuse a stored result (DONE).
A holder whose lease expired loses the key to the next claimer, and its late
``complete``/``release`` is ignored (the token no longer matches).
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from enum import StrEnum
from typing import Protocol


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


@dataclass(slots=True)
class _Entry:
    token: str
    expires: float
    done: bool = False
    result: bytes | None = None


class MemoryIdempotencyStore:
    """An in-process IdempotencyStore (the embedded default)."""

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
        entry = self._entries.get(key)
        if entry is None or entry.token != token or entry.done:
            return False
        entry.done = True
        entry.result = result
        entry.expires = self._clock() + ttl
        return True

    async def release(self, key: str, token: str) -> bool:
        entry = self._entries.get(key)
        if entry is None or entry.token != token or entry.done:
            return False
        del self._entries[key]
        return True

    def __len__(self) -> int:
        return len(self._entries)
