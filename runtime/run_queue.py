"""``RunQueue``: the sync actors of a system that are ready for a turn, run by one loop callback.

An actor becomes ready when its mailbox turns non-empty (see :mod:`troupe.dispatch`).
A sync actor's cell then joins the system's ready queue, and one drainer callback on
the event loop runs the queued cells' turns one after another: a handler that tells an
idle actor makes it ready, and its turn runs right after, in the same loop callback
(no loop iteration, no ``Handle`` per hop). A cell that still has messages after its
turn goes to the back of the queue, so ready actors take turns in order. After
``RUN_TURNS`` turns, or once ``RUN_SLICE`` seconds have passed, the drainer yields:
it schedules itself again behind what else is ready on the loop (tasks woken meanwhile,
I/O, timers), so nothing waits for more than a slice plus the turn that ended it.

Each drain runs in a fresh, empty ``contextvars.Context``: a turn never inherits the
context of whoever made its actor ready (the trace of a message is entered per message,
see :mod:`troupe.tracing`). ``async def`` actors keep a task per turn, and a simulated
loop (:mod:`troupe.testing`), whose seeded scheduler orders the turns itself, gets one
loop callback per turn (:class:`DirectQueue`).
"""

from __future__ import annotations

from collections import deque
from contextvars import Context
from time import perf_counter
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import asyncio

    from .cell_state import CellState

#: Turns a drain runs at most before it yields to the event loop.
RUN_TURNS = 256
#: Seconds a drain runs at most (checked after each turn) before it yields to the event loop.
RUN_SLICE = 0.002


class RunQueue:
    """Sync cells ready for a turn, run one after another by one drainer callback."""

    __slots__ = ("_loop", "_pending", "_ready")

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        self._ready: deque[CellState] = deque()
        self._pending = False  # a drain is scheduled or running

    def add(self, cell: CellState) -> None:
        """Queue ``cell``'s turn (its ``_scheduled`` is set; loop thread only)."""
        self._ready.append(cell)
        if not self._pending:
            self._pending = True
            self._loop.call_soon(self._drain, context=Context())

    def _drain(self) -> None:
        ready = self._ready
        left = RUN_TURNS
        end = perf_counter() + RUN_SLICE
        try:
            while ready:
                ready.popleft()._drain_sync()
                left -= 1
                if not left or perf_counter() >= end:
                    break
        finally:
            if ready:  # yield: the rest runs after what else is ready on the loop
                self._loop.call_soon(self._drain, context=Context())
            else:
                self._pending = False


class DirectQueue:
    """One loop callback per turn, for loops that order the turns themselves (simulations)."""

    __slots__ = ("_loop",)

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop

    def add(self, cell: CellState) -> None:
        """Schedule ``cell``'s turn as a loop callback of its own."""
        self._loop.call_soon(cell._drain_sync)
