"""``Retry``: the shared :class:`~troupe.supervisors.Backoff` as a retry policy.

One policy object serves decorators on plain functions, event-bus subscribers,
saga steps and broker bridges:

>>> policy = Retry(max_attempts=3, initial=0.0, retry_on=(ConnectionError,))
>>> calls = []
>>> @policy
... def flaky() -> str:
...     calls.append(1)
...     if len(calls) < 3:
...         raise ConnectionError("try again")
...     return "ok"
>>> flaky(), len(calls)
('ok', 3)
"""

from __future__ import annotations

import asyncio
import functools
import inspect
import logging
import random
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, ParamSpec, TypeVar, cast, overload

from troupe.backoff import Backoff, Jitter
from troupe.errors import ConfigError

logger = logging.getLogger(__name__)

P = ParamSpec("P")
T = TypeVar("T")

#: Called before each retry with (attempt that failed, its exception, delay before the next).
RetryListener = Callable[[int, BaseException, float], None]


@dataclass(frozen=True)
class Retry:
    """How often and how patiently to retry a failing call.

    ``max_attempts`` counts the first call (1 = never retry). Delays come from
    a :class:`Backoff` built from ``initial``/``maximum``/``multiplier``/``jitter``.
    An exception is retried when it is an instance of ``retry_on`` and not of
    ``give_up_on``; everything else is raised at once.
    """

    max_attempts: int = 3
    initial: float = 0.1
    maximum: float = 10.0
    multiplier: float = 2.0
    jitter: Jitter | str = Jitter.FULL
    retry_on: tuple[type[BaseException], ...] = (Exception,)
    give_up_on: tuple[type[BaseException], ...] = ()
    backoff: Backoff = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if isinstance(self.max_attempts, bool) or not isinstance(self.max_attempts, int):
            raise ConfigError("retry.max_attempts", f"must be an int, got {self.max_attempts!r}")
        if self.max_attempts < 1:
            raise ConfigError("retry.max_attempts", f"must be at least 1, got {self.max_attempts}")
        backoff = Backoff(
            initial=self.initial,
            maximum=self.maximum,
            multiplier=self.multiplier,
            jitter=cast(Jitter, self.jitter),  # Backoff validates and converts
        )
        object.__setattr__(self, "backoff", backoff)
        object.__setattr__(self, "jitter", backoff.jitter)

    @classmethod
    def never(cls) -> Retry:
        """One attempt, no retries."""
        return cls(max_attempts=1, initial=0.0, maximum=0.0)

    # -- decisions (what bridges and actors use) ----------------------------------------

    def retries(self, exc: BaseException) -> bool:
        """True when ``exc`` is of a kind this policy retries."""
        return isinstance(exc, self.retry_on) and not isinstance(exc, self.give_up_on)

    def should_retry(self, exc: BaseException, attempt: int) -> bool:
        """True when attempt number ``attempt`` (1-based) failed with ``exc`` and may be retried."""
        return attempt < self.max_attempts and self.retries(exc)

    def delay(self, attempt: int, rng: random.Random | None = None) -> float:
        """Seconds to wait after failed attempt number ``attempt`` (1-based)."""
        return self.backoff.delay(max(0, attempt - 1), rng)

    # -- running callables --------------------------------------------------------------

    async def call(
        self,
        fn: Callable[..., Any],
        *args: Any,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        on_retry: RetryListener | None = None,
        **kwargs: Any,
    ) -> Any:
        """Call ``fn`` (sync or async) until it succeeds or the policy gives up.

        ``sleep`` waits between attempts (pass ``system.clock.sleep`` inside an
        actor system so virtual clocks apply). The last exception is raised with
        a note saying how many attempts were made.
        """
        attempt = 1
        while True:
            try:
                result = fn(*args, **kwargs)
                if inspect.isawaitable(result):
                    result = await result
                return result
            except Exception as exc:
                if not self.should_retry(exc, attempt):
                    self._give_up(exc, attempt)
                    raise
                delay = self.delay(attempt)
                self._notify(on_retry, attempt, exc, delay)
                await sleep(delay)
                attempt += 1

    def call_sync(
        self,
        fn: Callable[..., T],
        *args: Any,
        sleep: Callable[[float], None] = time.sleep,
        on_retry: RetryListener | None = None,
        **kwargs: Any,
    ) -> T:
        """Blocking variant of :meth:`call` for sync callables."""
        attempt = 1
        while True:
            try:
                return fn(*args, **kwargs)
            except Exception as exc:
                if not self.should_retry(exc, attempt):
                    self._give_up(exc, attempt)
                    raise
                delay = self.delay(attempt)
                self._notify(on_retry, attempt, exc, delay)
                sleep(delay)
                attempt += 1

    @overload
    def __call__(self, fn: Callable[P, Awaitable[T]]) -> Callable[P, Awaitable[T]]: ...
    @overload
    def __call__(self, fn: Callable[P, T]) -> Callable[P, T]: ...
    def __call__(self, fn: Callable[P, Any]) -> Callable[P, Any]:
        """Decorate a sync or async function so that calls to it are retried."""
        if inspect.iscoroutinefunction(fn):

            @functools.wraps(fn)
            async def retried_async(*args: P.args, **kwargs: P.kwargs) -> Any:
                return await self.call(functools.partial(fn, *args, **kwargs))

            return retried_async

        @functools.wraps(fn)
        def retried(*args: P.args, **kwargs: P.kwargs) -> Any:
            return self.call_sync(functools.partial(fn, *args, **kwargs))

        return retried

    def _give_up(self, exc: BaseException, attempt: int) -> None:
        if attempt > 1:
            exc.add_note(f"troupe.Retry gave up after {attempt} attempts")

    @staticmethod
    def _notify(
        listener: RetryListener | None, attempt: int, exc: BaseException, delay: float
    ) -> None:
        logger.debug(
            "attempt %d failed (%s: %s); retrying in %.3fs", attempt, type(exc).__name__, exc, delay
        )
        if listener is not None:
            listener(attempt, exc, delay)
