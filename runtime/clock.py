"""Clocks: the system's source of time and of delayed callbacks.

``RealClock`` follows the event loop. ``VirtualClock`` only moves when told to
(``await clock.advance(seconds)``), so timers, backoff and ask timeouts can be
tested exactly and fast.
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
from collections.abc import Callable
from typing import Any, Protocol


class TimerHandle(Protocol):
    """Something that can cancel a scheduled callback."""

    def cancel(self) -> None: ...


class Clock(Protocol):
    """The time source an ActorSystem uses for timers, timeouts and backoff."""

    def now(self) -> float:
        """Monotonic time in seconds."""
        ...

    def call_later(self, delay: float, callback: Callable[..., Any], *args: Any) -> TimerHandle:
        """Run ``callback(*args)`` on the loop after ``delay`` seconds."""
        ...

    async def sleep(self, delay: float) -> None:
        """Suspend the caller for ``delay`` seconds of this clock's time."""
        ...


class RealClock:
    """Wall-clock time of the running event loop."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop

    def now(self) -> float:
        return self._loop.time()

    def call_later(self, delay: float, callback: Callable[..., Any], *args: Any) -> TimerHandle:
        return self._loop.call_later(max(0.0, delay), callback, *args)

    async def sleep(self, delay: float) -> None:
        await asyncio.sleep(delay)


class _VirtualTimer:
    __slots__ = ("args", "callback", "cancelled", "when")

    def __init__(self, when: float, callback: Callable[..., Any], args: tuple[Any, ...]) -> None:
        self.when = when
        self.callback = callback
        self.args = args
        self.cancelled = False

    def cancel(self) -> None:
        self.cancelled = True


class VirtualClock:
    """A clock that stands still until ``advance`` moves it.

    >>> clock = VirtualClock()
    >>> clock.now()
    0.0

    Due callbacks run in time order (ties in scheduling order); between two
    due times the event loop gets to run, so actors react to each timer before
    the next one fires.
    """

    def __init__(self, start: float = 0.0) -> None:
        self._now = start
        self._heap: list[tuple[float, int, _VirtualTimer]] = []
        self._seq = itertools.count()

    def now(self) -> float:
        return self._now

    def call_later(self, delay: float, callback: Callable[..., Any], *args: Any) -> TimerHandle:
        timer = _VirtualTimer(self._now + max(0.0, delay), callback, args)
        heapq.heappush(self._heap, (timer.when, next(self._seq), timer))
        return timer

    async def sleep(self, delay: float) -> None:
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self.call_later(delay, _resolve, future)
        await future

    def pending(self) -> int:
        """How many timers are scheduled and not cancelled."""
        return sum(1 for _, _, timer in self._heap if not timer.cancelled)

    def next_deadline(self) -> float | None:
        """The time of the earliest live timer, or None."""
        self._drop_cancelled()
        return self._heap[0][0] if self._heap else None

    async def advance(self, seconds: float) -> None:
        """Move time forward by ``seconds``, firing every timer that falls due."""
        if seconds < 0:
            raise ValueError("a clock cannot go backwards")
        target = self._now + seconds
        await _settle()
        while True:
            self._drop_cancelled()
            if not self._heap or self._heap[0][0] > target:
                break
            when, _, timer = heapq.heappop(self._heap)
            self._now = max(self._now, when)
            timer.callback(*timer.args)
            await _settle()
        self._now = target
        await _settle()

    def _drop_cancelled(self) -> None:
        while self._heap and self._heap[0][2].cancelled:
            heapq.heappop(self._heap)


def _resolve(future: asyncio.Future[None]) -> None:
    if not future.done():
        future.set_result(None)


async def _settle(rounds: int = 20) -> None:
    """Let the event loop run the callbacks and tasks that are ready now."""
    for _ in range(rounds):
        await asyncio.sleep(0)
