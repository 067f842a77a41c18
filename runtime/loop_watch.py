"""Why the event loop ran late: code that blocked it, or a process kept from running.

A lag (the loop-lag timer firing late, a sync handler that took long) has one of
these causes, told apart by what it left behind. Nothing is measured per message:
the loop-lag timer marks a baseline at each tick, and a lag is judged over the time
since the last one.

- The loop's thread computed: its CPU time (``time.thread_time()``) advanced.
- Every thread of the process was kept from running and the process used no CPU
  meanwhile (``time.process_time()``): the machine or the container's CPU limit is
  saturated, or the process was paused. A watchdog thread that wakes every few
  milliseconds measures how late it wakes: it is kept from running as the loop is.
- Neither: the loop's thread waited in a blocking call (``time.sleep``, sync I/O, a lock)
  or for the GIL, held by other threads of the process that computed meanwhile (timing
  alone cannot tell these two apart, so the warning names both).

While the loop is late, the watchdog also looks at the loop thread's stack for an
actor's handler or lifecycle hook, so that a warning can name the actor.
"""

from __future__ import annotations

import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from enum import Enum

from .cell import current_actor

#: Wake-up lateness of the watchdog below this (past the GIL's switch interval) is
#: scheduling noise, not starvation.
NOISE = 0.001


class Cause(Enum):
    """What kept the event loop from running."""

    COMPUTING = "computing"  # code on the loop's thread ran
    WAITING = "waiting"  # the loop's thread waited: a blocking call, or the GIL
    NO_CPU = "no_cpu"  # the process got no CPU


@dataclass(frozen=True, slots=True)
class Verdict:
    """Why a stretch of ``seconds`` was lost, with the figures it was judged by."""

    cause: Cause
    seconds: float
    cpu: float  # CPU seconds of the loop's thread
    starved: float  # seconds every thread of the process was kept from running
    others: float  # CPU seconds of the process's other threads

    @property
    def blocking(self) -> bool:
        """True when code on the loop (or a thread holding the GIL) caused it."""
        return self.cause is not Cause.NO_CPU

    @property
    def threads_busy(self) -> bool:
        """Other threads of the process computed for a good part of it."""
        return self.others >= self.seconds / 4

    def explain(self) -> str:
        """The cause in words, for a warning."""
        if self.cause is Cause.COMPUTING:
            return f"it computed: {self.cpu:.3f} s of CPU on the loop's thread"
        if self.cause is Cause.WAITING:
            text = "it waited in a blocking call: a sleep, sync I/O or a lock"
            if self.threads_busy:
                text += (
                    f"; or for the GIL: other threads of this process used {self.others:.3f} s "
                    "of CPU meanwhile, and CPU-bound Python code in threads (ThreadActors "
                    "included) belongs in another process"
                )
            return text
        return (
            f"no code on the loop blocked it: the process got no CPU for about "
            f"{self.starved:.3f} s (the machine or the container's CPU limit is saturated, or "
            "the process was paused); the cure is more CPU or fewer busy processes, not "
            "moving code off the loop"
        )


def judge(seconds: float, cpu: float, starved: float, others: float) -> Verdict:
    """The cause of ``seconds`` lost on the loop, from the figures of a window around it:
    the loop thread's CPU time, the watchdog's lateness and the other threads' CPU time.
    Starvation is a process kept from running that did not use the CPU meanwhile (a
    thread waiting for the GIL held by busy threads is told as waiting)."""
    starved = min(starved, seconds)
    if cpu >= starved and cpu >= seconds / 4:
        cause = Cause.COMPUTING
    elif starved >= seconds / 3 and cpu + others < seconds / 2:
        cause = Cause.NO_CPU
    else:
        cause = Cause.WAITING
    return Verdict(cause, seconds, cpu, starved, others)


class LoopWatch:
    """The watchdog thread and the baselines a lag is judged against.

    ``mark`` and ``verdict`` run on the loop's thread; ``due`` tells the watchdog when
    the loop-lag timer is due (None while it is not armed), so it can tell a late loop.
    """

    __slots__ = (
        "_allowance",
        "_baseline",
        "_due",
        "_loop_thread",
        "_named",
        "_progress",
        "_stop",
        "_thread",
        "period",
    )

    def __init__(self, period: float, due: Callable[[], float | None]) -> None:
        self.period = period
        self._due = due
        # (seconds the watchdog woke late, summed; when it is next due to wake): one
        # attribute, so that the loop's thread reads the two of one moment
        self._progress = (0.0, float("inf"))
        self._allowance = sys.getswitchinterval() + NOISE
        self._named: tuple[float, str] | None = None  # (due, actor on the loop's stack)
        self._baseline = (0.0, 0.0, 0.0)
        self._loop_thread = 0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        """Start the watchdog; call on the loop's thread."""
        self._loop_thread = threading.get_ident()
        self.mark()
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, name="troupe-loop-watch", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """Stop the watchdog and wait for its thread to end (it wakes at once)."""
        thread, self._thread = self._thread, None
        if thread is not None:
            self._stop.set()
            thread.join(1.0)

    def mark(self) -> None:
        """Start a new window (at each tick of the loop-lag timer)."""
        self._baseline = (time.thread_time(), time.process_time(), self.starved())

    def starved(self) -> float:
        """Seconds the watchdog was kept from running so far, the wake-up it is late for
        now included (after a pause, the loop's thread may run before it)."""
        total, expected = self._progress
        return total + max(0.0, time.monotonic() - expected - self._allowance)

    def verdict(self, seconds: float) -> Verdict:
        """Why ``seconds`` were lost on the loop during the window since the last mark."""
        cpu0, process0, starved0 = self._baseline
        cpu = time.thread_time() - cpu0
        others = max(0.0, time.process_time() - process0 - cpu)
        return judge(seconds, cpu, self.starved() - starved0, others)

    def actor_for(self, due: float) -> str | None:
        """The actor found running on the loop's stack while it was late for ``due``."""
        named = self._named
        return named[1] if named is not None and named[0] == due else None

    def _run(self) -> None:
        # Each wake-up's lateness past the GIL's switch interval (what one busy thread may
        # keep it waiting) counts as starvation.
        period = self.period
        allowance = self._allowance
        total, expected = 0.0, time.monotonic() + period
        self._progress = (total, expected)
        looked = None  # the due it looked at the loop's stack for
        while not self._stop.wait(max(0.0, expected - time.monotonic())):
            now = time.monotonic()
            late = now - expected - allowance
            if late > 0:
                total += late
            expected = now + period
            self._progress = (total, expected)
            due = self._due()
            if due is not None and now - due >= period and due != looked:
                looked = due
                self._look(due)

    def _look(self, due: float) -> None:
        """The loop is late for ``due``: which actor, if any, is running on it?"""
        frame = sys._current_frames().get(self._loop_thread)
        if frame is None:
            return
        name = current_actor(frame=frame)
        del frame
        if name is not None:
            self._named = (due, name)
