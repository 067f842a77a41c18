"""Ask timeouts for many futures on one clock timer.

Most asks use the same timeout, so their deadlines arrive in order: they wait
in a FIFO and a single timer, armed for the oldest one, expires them. An ask
whose deadline comes before the newest queued one gets a timer of its own.
"""

from __future__ import annotations

import asyncio
from collections import deque
from typing import Any

from .clock import Clock, TimerHandle
from .errors import AskTimeout


def _expire(future: asyncio.Future[Any], name: str, timeout: float) -> None:
    if not future.done():
        future.set_exception(AskTimeout(name, timeout))


class AskDeadlines:
    """Fails pending ask futures with AskTimeout once their deadline passes."""

    __slots__ = ("_armed_for", "_clock", "_fifo", "_timer")

    def __init__(self, clock: Clock) -> None:
        self._clock = clock
        self._fifo: deque[tuple[float, asyncio.Future[Any], str, float]] = deque()
        self._timer: TimerHandle | None = None
        self._armed_for = 0.0

    def add(self, future: asyncio.Future[Any], name: str, timeout: float) -> None:
        """Fail ``future`` with AskTimeout(name, timeout) unless it is done within ``timeout``."""
        when = self._clock.now() + timeout
        fifo = self._fifo
        while fifo and fifo[0][1].done():
            fifo.popleft()
        if fifo and when < fifo[-1][0]:
            handle = self._clock.call_later(timeout, _expire, future, name, timeout)
            future.add_done_callback(lambda _: handle.cancel())
            return
        fifo.append((when, future, name, timeout))
        if self._timer is None or fifo[0][0] < self._armed_for:
            self._arm()

    def _arm(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
        self._armed_for = self._fifo[0][0]
        self._timer = self._clock.call_later(self._armed_for - self._clock.now(), self._fire)

    def _fire(self) -> None:
        self._timer = None
        now = self._clock.now()
        fifo = self._fifo
        while fifo and (fifo[0][1].done() or fifo[0][0] <= now):
            _, future, name, timeout = fifo.popleft()
            _expire(future, name, timeout)
        if fifo:
            self._arm()

    def cancel(self) -> None:
        """Stop the timer and forget the pending asks (the system is shutting down)."""
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        self._fifo = deque()

    def __len__(self) -> int:
        return len(self._fifo)
