"""A blocked event loop made visible: loop-lag monitor and slow-handler warnings.

Every actor of a system shares one event loop, so a plain ``Actor`` whose
``receive`` blocks (``time.sleep``, a sync driver, a long computation) stalls
all the others. Two things report it, neither costing anything per message:

- :class:`LoopLagMonitor`, a timer that fires every ``interval`` seconds and
  measures how late it fired. With metrics on, the lateness is the histogram
  ``troupe_loop_lag_seconds{system}``.
- :class:`SlowHandlers`: the dispatcher times its turns in a few segments
  (see :mod:`troupe.dispatch`), and an actor whose segment overran times each
  message; a sync handler that held the loop for longer than the system's
  ``slow_handler_warning`` (default 0.1 s) is logged as a WARNING naming the
  actor and the message type, at most once per ``every`` seconds per actor
  class. A lag that no handler explains (an
  ``async def`` handler or a callback that blocks) is logged by the monitor.

Both tell blocking code from a process kept from running (the machine or the
container's CPU limit saturated, a paused process, other threads holding the GIL):
see :mod:`troupe.loop_watch`, whose watchdog thread also names the actor running on
a late loop. The cure for blocking code is to run it in a :class:`~troupe.ThreadActor`;
a starved process needs CPU, not code moved off the loop.

>>> watch = SlowHandlers(threshold=0.1)
>>> watch.threshold
0.1
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from typing import Any

from .errors import ConfigError
from .loop_watch import LoopWatch, Verdict

logger = logging.getLogger(__name__)

#: Seconds between two warnings about the same actor class (or about unexplained lag).
WARNING_EVERY = 10.0
_CURE = "blocking code belongs in a ThreadActor, which runs it on its own thread"


def check_seconds(setting: str, value: Any) -> float:
    """``value`` as a positive number of seconds, ``inf`` for None (off)."""
    if value is None:
        return float("inf")
    if isinstance(value, bool) or not isinstance(value, int | float) or not value > 0:
        raise ConfigError(setting, f"must be a positive number of seconds or None, got {value!r}")
    return float(value)


class SlowHandlers:
    """Rate-limited WARNINGs about sync handlers that held the event loop.

    The dispatcher calls :meth:`held` only when a handler (or a segment of a
    turn) took at least ``threshold`` seconds.
    """

    __slots__ = ("_last", "_suppressed", "every", "last_named", "threshold", "watch")

    def __init__(self, threshold: float, every: float = WARNING_EVERY) -> None:
        self.threshold = threshold
        self.every = every
        self.last_named = -float("inf")  # time.monotonic() of the last slow handler seen
        self.watch: LoopWatch | None = None  # set by a running LoopLagMonitor
        self._last: dict[type | None, float] = {}  # None: the process was starved
        self._suppressed: dict[type | None, int] = {}

    def held(self, name: str, actor: object, seconds: float, message: Any) -> None:
        """Actor ``name``'s sync handler took ``seconds`` on ``message`` without yielding."""
        now = time.monotonic()
        self.last_named = now
        watch = self.watch
        verdict = watch.verdict(seconds) if watch is not None else None
        starved = verdict is not None and not verdict.blocking
        kind = None if starved else type(actor)  # starvation: one line for every actor
        if now - self._last.get(kind, -float("inf")) < self.every:
            self._suppressed[kind] = self._suppressed.get(kind, 0) + 1
            return
        self._last[kind] = now
        suppressed = self._suppressed.pop(kind, 0)
        more = ""
        if suppressed:
            more = f" ({suppressed} more from {'all' if kind is None else kind.__name__} "
            more += "actors not logged)"
        kind_of = type(message).__name__
        if verdict is not None and starved:
            logger.warning(
                "actor %s took %.3f s handling a %s message, but %s%s",
                name,
                seconds,
                kind_of,
                verdict.explain(),
                more,
            )
            return
        logger.warning(
            "actor %s held the event loop for %.3f s handling a %s message%s: every other actor "
            "waited; %s%s",
            name,
            seconds,
            kind_of,
            "" if verdict is None else f" ({verdict.explain()})",
            _CURE,
            more,
        )


class LoopLagMonitor:
    """A timer measuring its own lateness: how long the event loop was kept from it.

    ``last`` and ``max`` are the latest and the largest lateness in seconds;
    ``record`` (the metrics histogram) gets each one. A lateness of at least
    the slow-handler threshold that no slow handler explains is logged, with its cause
    and the actor that was running (:mod:`troupe.loop_watch`).
    """

    __slots__ = (
        "_due",
        "_handle",
        "_last_warned",
        "_loop",
        "_record",
        "interval",
        "last",
        "max",
        "slow",
        "watch",
    )

    def __init__(
        self,
        loop: asyncio.AbstractEventLoop,
        interval: float,
        slow: SlowHandlers,
        record: Callable[[float], None] | None = None,
    ) -> None:
        self._loop = loop
        self.interval = interval
        self.slow = slow
        self._record = record
        self._handle: asyncio.TimerHandle | None = None
        self._due = 0.0
        self._last_warned = -float("inf")
        self.last = 0.0
        self.max = 0.0
        self.watch: LoopWatch | None = None  # while warnings are on and it ticks

    def start(self) -> None:
        """Start ticking (on the loop's thread). Does nothing on a loop whose time is
        not real time (a simulation's virtual time: its timers fire when it is idle)."""
        if self._handle is None and _real_time(self._loop):
            self._arm()
            if self.slow.threshold != float("inf") and self.watch is None:
                period = min(max(self.slow.threshold / 4, 0.01), 0.5)
                self.watch = self.slow.watch = LoopWatch(period, self._due_now)
                self.watch.start()

    def stop(self) -> None:
        """Stop ticking."""
        if self._handle is not None:
            self._handle.cancel()
            self._handle = None
        watch, self.watch = self.watch, None
        if watch is not None:
            if self.slow.watch is watch:
                self.slow.watch = None
            watch.stop()

    def _due_now(self) -> float | None:
        """When the next tick is due (loop time), None when not ticking (the watchdog's view)."""
        return self._due if self._handle is not None else None

    @property
    def running(self) -> bool:
        return self._handle is not None

    def _arm(self) -> None:
        self._due = self._loop.time() + self.interval
        self._handle = self._loop.call_at(self._due, self._tick)

    def _tick(self) -> None:
        self._handle = None
        if not _real_time(self._loop):  # the loop's time jumped ahead: it is virtual
            return
        lag = max(0.0, self._loop.time() - self._due)
        self.last = lag
        if lag > self.max:
            self.max = lag
        if self._record is not None:
            self._record(lag)
        watch = self.watch
        if lag >= self.slow.threshold:
            self._unexplained(lag, watch)
        if watch is not None:
            watch.mark()
        self._arm()

    def _unexplained(self, lag: float, watch: LoopWatch | None) -> None:
        now = time.monotonic()
        if now - self.slow.last_named <= lag + self.interval:
            return  # a slow handler was named for it
        if now - self._last_warned < self.slow.every:
            return
        self._last_warned = now
        verdict = watch.verdict(lag) if watch is not None else None
        actor = watch.actor_for(self._due) if watch is not None else None
        logger.warning("%s", unexplained_lag(lag, verdict, actor))


def unexplained_lag(lag: float, verdict: Verdict | None, actor: str | None) -> str:
    """The warning about a lag of ``lag`` s that no slow sync handler explains."""
    running = f" while actor {actor} was running" if actor is not None else ""
    if verdict is not None and not verdict.blocking:
        return f"the event loop ran {lag:.3f} s late{running}, but {verdict.explain()}"
    if actor is not None:
        where = f"by actor {actor}, outside sync actor handlers (an async def handler or a hook)"
    else:
        where = (
            "outside sync actor handlers (by an async def handler, a lifecycle hook or other "
            "code on the loop)"
        )
    cause = f": {verdict.explain()}" if verdict is not None else ""
    return f"the event loop was blocked for about {lag:.3f} s {where}{cause}; {_CURE}"


def _real_time(loop: asyncio.AbstractEventLoop) -> bool:
    """True when the loop's clock is the monotonic clock (asyncio's and uvloop's are)."""
    return abs(loop.time() - time.monotonic()) < 1.0
