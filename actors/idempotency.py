"""Once-per-key effects over an :class:`~troupe.brokers.idempotency.IdempotencyStore`.

``Idempotent.run(key, effect)`` claims ``key`` atomically before running the
effect: the first caller runs it and stores its result; a duplicate that comes
later gets the stored result without running anything; a duplicate that comes
while the first is still running waits for it (and takes over when the first
caller failed and released the key, or when its lease ran out). There is no
check-then-set window, in one process or across many sharing a Redis store.
While the effect runs, a heartbeat renews the lease every ``lease / 3``
seconds, so a live holder keeps its key however long the effect takes and a
dead one (kill -9) blocks duplicates for about one ``lease`` (5 s by default).

The guarantee, exactly:

- *At most once* (exactly once once a caller finishes) when the effect
  commits together with the completion: the effect returns
  ``Atomic(result, writes)`` and ``writes(pipeline)`` is applied in the same
  Redis transaction that marks the key done (``RedisIdempotencyStore.complete_with``).
  A holder that dies before the commit leaves nothing behind.
- Otherwise *effectively once* only if the effect is idempotent itself: a
  holder that dies after its effect and before marking the key done leaves
  the key to the next duplicate once its lease runs out, and the effect runs
  again. Make it idempotent by passing the key to the external service as its
  idempotency key (as the ledgers in ``troupe.examples.orders`` do), or by
  writing it where a repeat is a no-op (an upsert keyed by it).

>>> import asyncio
>>> from troupe.brokers.idempotency import MemoryIdempotencyStore
>>> guard = Idempotent(MemoryIdempotencyStore())
>>> effects = []
>>> async def charge() -> dict:
...     effects.append("charged")
...     return {"ok": True}
>>> async def main():
...     return await asyncio.gather(*(guard.run("order-1", charge) for _ in range(3)))
>>> asyncio.run(main()), effects, guard.stats.suppressed
([{'ok': True}, {'ok': True}, {'ok': True}], ['charged'], 2)
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import json
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Protocol, cast

from troupe.actor import Actor
from troupe.backoff import Backoff
from troupe.brokers.idempotency import AtomicIdempotencyStore, ClaimState, IdempotencyStore
from troupe.errors import ConfigError, TroupeError
from troupe.ref import ActorRef

logger = logging.getLogger(__name__)


class Codec(Protocol):
    """Turns an effect's result into bytes for the store and back."""

    def encode(self, value: Any) -> bytes: ...

    def decode(self, data: bytes) -> Any: ...


class JsonCodec:
    """JSON results (the default): safe to read back from a shared store."""

    def encode(self, value: Any) -> bytes:
        return json.dumps(value, separators=(",", ":"), sort_keys=True).encode()

    def decode(self, data: bytes) -> Any:
        return json.loads(data)


class LeaseLost(TroupeError):
    """An :class:`Atomic` effect was not committed: its lease ran out and another caller
    claimed the key. Nothing of it was applied; calling ``run`` again returns the
    other caller's result."""

    def __init__(self, key: str) -> None:
        self.key = key
        super().__init__(
            f"lease on idempotency key {key!r} was lost before the effect committed; "
            "nothing was applied (run again to get the result of the caller that holds it)"
        )


class StillInProgress(TroupeError):
    """A duplicate waited for the first holder of a key longer than ``wait``."""

    def __init__(self, key: str, waited: float) -> None:
        self.key = key
        super().__init__(
            f"idempotency key {key!r} is still held by another caller after {waited:g} s; "
            "retry later (the holder's lease ends it if the holder died)"
        )


@dataclass(frozen=True, slots=True)
class Atomic:
    """Return this from an effect to commit ``writes`` with the completion (at most once).

    ``writes(transaction)`` queues the effect's writes on the store's
    transaction (a Redis MULTI pipeline of the same Redis as the store); they
    are applied in one step with marking the key done, or not at all. The
    caller gets ``result``.

    >>> # await guard.run("order-7", lambda: Atomic({"ok": True},
    >>> #                 lambda pipe: pipe.hincrby("stock", "book", -1)))
    """

    result: Any
    writes: Callable[[Any], Any]


@dataclass
class IdempotencyStats:
    """How often the effect ran, was suppressed as a duplicate, or failed."""

    executed: int = 0
    suppressed: int = 0
    waited: int = 0
    failed: int = 0
    lost_leases: int = 0


class Idempotent:
    """Runs an effect once per key (per result TTL) over any IdempotencyStore.

    At most once when the effect returns :class:`Atomic` (its writes commit with
    the completion); otherwise effectively once only if the effect is itself
    idempotent (see the module docstring). ``lease`` is how long a holder that
    stopped renewing keeps the key (renewed every ``lease / 3`` s while the effect
    runs): a dead holder blocks duplicates for about that long. ``ttl`` is how
    long a result is remembered. ``wait`` bounds how long a duplicate waits for
    a running first attempt (default: two leases); ``sleep`` is the clock's sleep.
    """

    def __init__(
        self,
        store: IdempotencyStore,
        *,
        lease: float = 5.0,
        ttl: float = 24 * 3600.0,
        wait: float | None = None,
        codec: Codec | None = None,
        poll: Backoff | None = None,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        namespace: str = "",
    ) -> None:
        if not lease > 0:
            raise ConfigError("idempotency.lease", f"must be positive, got {lease!r}")
        if not ttl > 0:
            raise ConfigError("idempotency.ttl", f"must be positive, got {ttl!r}")
        self.store = store
        self.lease = lease
        self.ttl = ttl
        self.wait = 2 * lease if wait is None else wait
        self.codec: Codec = codec or JsonCodec()
        self.poll = poll or Backoff(initial=0.005, maximum=0.5, multiplier=2.0, jitter="equal")
        self.sleep = sleep
        self.namespace = namespace
        self.stats = IdempotencyStats()

    async def run(self, key: str, effect: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        """Run ``effect(*args, **kwargs)`` (sync or async) unless ``key`` already ran.

        Returns the effect's result, or the stored result of the run that came
        first. An exception from the effect releases the key (a later duplicate
        may try again) and is raised. An effect that returns :class:`Atomic` has
        its writes committed with the completion; the caller gets its ``result``.
        """
        full_key = f"{self.namespace}{key}"
        waited = 0.0
        attempt = 0
        while True:
            claim = await self.store.claim(full_key, lease=self.lease)
            if claim.state is ClaimState.DONE:
                self.stats.suppressed += 1
                return None if claim.result is None else self.codec.decode(claim.result)
            if claim.state is ClaimState.ACQUIRED:
                assert claim.token is not None
                return await self._execute(full_key, claim.token, effect, args, kwargs)
            if waited >= self.wait:
                raise StillInProgress(full_key, waited)
            if attempt == 0:
                self.stats.waited += 1
            delay = min(self.poll.delay(attempt), max(self.wait - waited, 0.0)) or 0.001
            await self.sleep(delay)
            waited += delay
            attempt += 1

    async def _execute(
        self,
        key: str,
        token: str,
        effect: Callable[..., Any],
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
    ) -> Any:
        try:
            result = effect(*args, **kwargs)
            if inspect.isawaitable(result):  # it yields to the loop: keep the lease alive
                heartbeat = asyncio.ensure_future(self._heartbeat(key, token))
                try:
                    result = await result
                finally:
                    heartbeat.cancel()
                    with contextlib.suppress(asyncio.CancelledError):
                        await heartbeat
        except BaseException:
            self.stats.failed += 1
            if not await self.store.release(key, token):
                self.stats.lost_leases += 1
            raise
        if isinstance(result, Atomic):
            store = cast(AtomicIdempotencyStore, self.store)
            if not hasattr(store, "complete_with"):
                raise TypeError(
                    f"{type(self.store).__name__} cannot commit an Atomic effect; "
                    "use a store with complete_with (RedisIdempotencyStore, MemoryIdempotencyStore)"
                )
            encoded = self.codec.encode(result.result)
            done = await store.complete_with(
                key, token, encoded, ttl=self.ttl, effect=result.writes
            )
            if not done:
                # nothing was applied: report the run that owns the key now
                self.stats.lost_leases += 1
                raise LeaseLost(key)
            self.stats.executed += 1
            return result.result
        self.stats.executed += 1
        if not await self.store.complete(key, token, self.codec.encode(result), ttl=self.ttl):
            self.stats.lost_leases += 1
            logger.warning(
                "lease on idempotency key %r was lost before the effect finished "
                "(a heartbeat was late or the store was unreachable); a duplicate may "
                "run the effect again",
                key,
            )
        return result

    async def _heartbeat(self, key: str, token: str) -> None:
        """Renew the lease every lease / 3 seconds while the effect runs."""
        while True:
            await self.sleep(self.lease / 3)
            try:
                held = await self.store.renew(key, token, lease=self.lease)
            except Exception as exc:  # the store is unreachable: try again next beat
                logger.warning("renewing the lease on idempotency key %r failed: %r", key, exc)
                continue
            if not held:
                logger.warning("lease on idempotency key %r was lost while its effect ran", key)
                return


class Deduplicate(Actor):
    """An actor in front of ``target`` that forwards each message once per key.

    ``key`` maps a message to its idempotency key; duplicates get the reply of
    the first delivery without reaching ``target``. Replies must be encodable
    by the guard's codec (JSON by default).
    """

    def __init__(self, target: ActorRef, guard: Idempotent, key: Callable[[Any], str]) -> None:
        self.target = target
        self.guard = guard
        self.key = key

    async def receive(self, message: Any) -> Any:
        return await self.guard.run(self.key(message), self.target.ask, message)
