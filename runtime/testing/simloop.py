"""``SimulatedLoop``: an asyncio event loop on virtual time with a seeded scheduler.

Two things make a run exactly repeatable:

- **Virtual time.** ``loop.time()`` is a number that moves only when nothing
  is ready to run: then it jumps to the earliest timer, which fires at once.
  Timers, ``asyncio.sleep``, timeouts, restart backoff and ask deadlines
  cost no wall-clock time and fire in time order.
- **Seeded choice.** Each step runs one ready callback, picked by a
  ``random.Random(seed)`` among all that are ready (a real loop runs them
  first-in first-out). Everything on the loop — actor turns, bridges, the
  in-memory broker, timers — interleaves in one exact order per seed, and a
  different seed gives another legal order.

>>> import asyncio
>>> loop = SimulatedLoop(seed=7)
>>> async def nap():
...     await asyncio.sleep(3600)
...     return asyncio.get_running_loop().time()
>>> loop.run_until_complete(nap())
3600.0
>>> loop.close()

Work that leaves the loop (threads, sockets to real servers) still runs, but
its timing is not controlled: a simulation is exact only for what runs on
the loop. While a thread works for the loop (a ThreadActor's call,
``run_in_executor``; see :meth:`SimulatedLoop.hold_time`) virtual time
stands still and an idle loop waits for it in real time (up to ``hold_wait``
seconds at a time: then timers fire again, so a call whose thread died does
not freeze the run). When nothing is
ready, no timer is left and nothing arrives from outside for ``stall`` real
seconds, the run fails with :class:`SimulationStalled` (a deadlock would
otherwise hang); so does a run whose virtual time would pass ``max_time``
(a livelock). Set ``fifo=True`` to keep asyncio's order and use only virtual
time. An ActorSystem started on this loop bounds its turns by message count
only (``throughput_deadline`` is wall-clock time, which would make runs differ).
"""

from __future__ import annotations

import asyncio
import heapq
import logging
import random
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, TypeVar

if TYPE_CHECKING:
    from troupe.hooks import HandlerHook

logger = logging.getLogger(__name__)

T = TypeVar("T")

#: The attributes of asyncio's BaseEventLoop (CPython 3.11-3.13) that ``_run_once``
#: drives: asyncio's own internals, not another troupe package's.
ASYNCIO_INTERNALS = ("_ready", "_scheduled", "_stopping", "_timer_cancelled_count", "_run_once")


class SimulationStalled(RuntimeError):
    """Nothing on a simulated loop can run and nothing outside it woke it up."""


class SimulatedLoop(asyncio.SelectorEventLoop):
    """An event loop whose clock is virtual and whose ready callbacks run in a seeded order.

    ``steps`` counts the callbacks run; ``choices`` counts the steps where
    more than one callback was ready (where the seed mattered). An
    ActorSystem started on it takes ``troupe_handler_hook`` (the run's fault
    injector, set by :class:`~troupe.testing.Simulation`) as its handler hook.
    """

    troupe_handler_hook: HandlerHook | None = None
    troupe_deterministic = True  # ActorSystem: bound turns by message count, not wall time
    simulation: Any = None  # the Simulation driving it (troupe.testing.current_simulation)

    def __init__(
        self,
        seed: int = 0,
        *,
        start: float = 0.0,
        fifo: bool = False,
        stall: float = 30.0,
        max_time: float | None = None,
        hold_wait: float = 0.5,
    ) -> None:
        super().__init__()
        self.seed = seed
        self.fifo = fifo
        self.stall = stall
        self.max_time = max_time
        self.hold_wait = hold_wait
        self.rng = random.Random(seed)
        self.steps = 0
        self.choices = 0
        self._virtual_now = float(start)
        self._clock_resolution = 0.0  # time is exact here
        self.held = 0  # futures resolved from outside the loop (threads) still pending

    def time(self) -> float:
        """The virtual time in seconds (starts at ``start``, moves only between steps)."""
        return self._virtual_now

    def hold_time(self, future: asyncio.Future[Any]) -> None:
        """Keep virtual time still until ``future`` is done: it is resolved from outside
        the loop (a thread actor's call; ``run_in_executor`` holds its own), so while it
        is pending an idle loop waits for it in real time instead of jumping ahead."""
        self.held += 1
        future.add_done_callback(self._release)

    def _release(self, _: object) -> None:
        self.held -= 1

    def run_in_executor(  # type: ignore[override]
        self, executor: Any, func: Callable[..., T], *args: Any
    ) -> asyncio.Future[T]:
        """As asyncio's, holding virtual time until the call returns."""
        future = super().run_in_executor(executor, func, *args)
        self.hold_time(future)
        return future

    def advance_to(self, when: float) -> None:
        """Move virtual time forward to ``when`` (never backwards)."""
        if when > self._virtual_now:
            if self.max_time is not None and when > self.max_time:
                raise SimulationStalled(
                    f"simulation (seed {self.seed}) ran past max_time={self.max_time:g} "
                    "virtual seconds (a livelock, or a timer that never stops?)"
                )
            self._virtual_now = when

    def _run_once(self) -> None:
        """One step: poll I/O without waiting, move time to the next timer when nothing is
        ready, make due timers ready, then run one ready callback of the seed's choosing."""
        scheduled: list[Any] = self._scheduled  # type: ignore[attr-defined]
        ready: Any = self._ready  # type: ignore[attr-defined]
        while scheduled and scheduled[0].cancelled():
            self._timer_cancelled_count -= 1  # type: ignore[attr-defined]
            heapq.heappop(scheduled)._scheduled = False
        self._process_events(self._selector.select(0))  # type: ignore[attr-defined]
        _make_due_ready(scheduled, ready, self._virtual_now)
        if not ready and not self._stopping:  # type: ignore[attr-defined]
            if self.held:
                # a thread works for the loop: wait for it in real time, time stands still
                # (up to ``hold_wait``: a call whose thread died must not freeze the run)
                events = self._selector.select(self.hold_wait)  # type: ignore[attr-defined]
                if events:
                    self._process_events(events)  # type: ignore[attr-defined]
                    return
            if scheduled:
                self.advance_to(scheduled[0]._when)
                _make_due_ready(scheduled, ready, self._virtual_now)
        if not ready:
            if self._stopping:  # type: ignore[attr-defined]
                return
            # nothing on the loop can run: only another thread or a socket can wake it
            self._process_events(self._wait_outside())  # type: ignore[attr-defined]
            return
        self._run_one(ready)

    def _wait_outside(self) -> list[Any]:
        """Wait up to ``stall`` real seconds for a thread or a socket to wake the loop."""
        events: list[Any] = self._selector.select(self.stall)  # type: ignore[attr-defined]
        if not events:
            raise SimulationStalled(
                f"simulation (seed {self.seed}) stalled at t={self._virtual_now:g}: "
                f"nothing ready and no I/O for {self.stall:g} s "
                f"({self.held} outside calls pending; a deadlock?)"
            )
        return events

    def _run_one(self, ready: Any) -> None:
        count = len(ready)
        if count == 1 or self.fifo:
            handle = ready.popleft()
        else:
            self.choices += 1
            index = self.rng.randrange(count)
            handle = ready[index]
            del ready[index]
        if handle.cancelled():
            return
        self.steps += 1
        handle._run()


def _make_due_ready(scheduled: list[Any], ready: Any, now: float) -> None:
    while scheduled and scheduled[0]._when <= now:
        handle = heapq.heappop(scheduled)
        handle._scheduled = False
        ready.append(handle)


__all__ = ["SimulatedLoop", "SimulationStalled"]
