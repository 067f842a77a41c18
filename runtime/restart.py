"""Restart intensity and backoff: the policy every supervisor applies, the top level too.

Failure is per message. A handler that raises fails its message (the asker gets
the exception, a bridge retries or dead-letters it) and the actor is restarted
**at once**, so the messages behind the failed one wait for nothing. What backs
off is a *crash loop*: failures in a row, with no message handled successfully
between them. :meth:`RestartTracker.record_failure` applies that rule for
actor supervisors and for the system's :class:`RestartPolicy` alike: the first
``max_restarts`` failures in a row restart at once, the next ``max_restarts``
wait out the backoff, one more gives up (the actor is stopped, a supervisor
escalates). A message handled successfully, or ``within`` seconds without a
failure, ends the run (Akka's backoff supervisor resets once the child runs well).
A failed ``on_start``/``on_restart`` is a crash loop from the first: it backs off.

``RestartIntensity`` is OTP's intensity/period window, used for OS-process
restarts (``RestartTracker.record``), where no message tells a good run from a bad one.

>>> tracker = RestartPolicy(max_restarts=2, within=10.0, backoff=Backoff.none()).window()
>>> [tracker.record_failure("a", float(t), ran_well=False) for t in range(5)]
[0.0, 0.0, 0.0, 0.0, None]
>>> tracker.record_failure("b", 0.0, ran_well=True), tracker.record_failure("b", 1.0, ran_well=True)
(0.0, 0.0)
"""

from __future__ import annotations

import random
from collections import deque
from dataclasses import dataclass, field

from .backoff import Backoff, BackoffState, derived_random
from .errors import ConfigError


@dataclass
class RestartIntensity:
    """At most ``max_restarts`` restarts within ``within`` seconds (OTP intensity/period).

    >>> window = RestartIntensity(max_restarts=2, within=10)
    >>> window.record(0.0), window.record(1.0), window.record(2.0)
    (True, True, False)
    """

    max_restarts: int = 3
    within: float = 5.0
    _times: deque[float] = field(default_factory=deque, repr=False)

    def __post_init__(self) -> None:
        _check_intensity("", self.max_restarts, self.within)

    def record(self, now: float) -> bool:
        """Count a restart at ``now``; False when it exceeds the limit (the supervisor gives up)."""
        times = self._times
        times.append(now)
        while times and times[0] <= now - self.within:
            times.popleft()
        return len(times) <= self.max_restarts

    def count(self, now: float) -> int:
        """Restarts inside the window that ends at ``now``."""
        return sum(1 for t in self._times if t > now - self.within)


@dataclass
class _FailureRun:
    """One actor's failures in a row: how many, the last one's time, its backoff."""

    backoff: BackoffState
    count: int = 0
    last: float = 0.0


@dataclass
class RestartTracker:
    """The restart bookkeeping of one supervisor: its intensity window plus one
    :class:`BackoffState` per child (keyed by name), and each actor's run of failures
    (:meth:`record_failure`, the rule for actors).

    >>> tracker = RestartTracker(RestartIntensity(1, within=10), Backoff.none())
    >>> tracker.record("db", now=0.0), tracker.record("db", now=1.0)
    (0.0, None)
    """

    intensity: RestartIntensity
    backoff: Backoff
    rng: random.Random = field(default_factory=derived_random, repr=False)
    _states: dict[str, BackoffState] = field(default_factory=dict, repr=False)
    _runs: dict[str, _FailureRun] = field(default_factory=dict, repr=False)

    def record(self, child: str, now: float) -> float | None:
        """Count a restart caused by ``child`` at ``now``: the backoff delay before it,
        or None when it exceeds the intensity limit (the supervisor gives up)."""
        if not self.intensity.record(now):
            return None
        return self.state(child).next_delay(now)

    def state(self, child: str) -> BackoffState:
        """The backoff state of ``child`` (made on first use)."""
        found = self._states.get(child)
        if found is None:
            found = self._states[child] = BackoffState(self.backoff, rng=self.rng)
        return found

    def record_failure(
        self,
        child: str,
        now: float,
        *,
        ran_well: bool,
        lifecycle: bool = False,
        answered: bool = False,
    ) -> float | None:
        """Count a failure of the actor ``child`` at ``now``: the delay before its restart
        (0.0: at once), or None when its crash loop is past the limit (give up).

        ``ran_well``: it handled a message successfully since its previous failure (the
        run of failures starts again). ``lifecycle``: ``on_start``/``on_restart`` failed,
        which a restart at once would only repeat: it backs off from the first.
        ``answered``: the failure went back to whoever sent the message — an ask's
        caller, or a bridge that retries a message that failed before — so it is the
        message's: it restarts at once and counts nothing. A burst of poison messages
        coming back for their retries, or asks refused one after another, is not a
        crash loop; fresh told messages failing one after the other are."""
        if answered and not lifecycle:
            return 0.0
        limit = self.intensity.max_restarts
        run = self._runs.get(child)
        if run is None or ran_well or now - run.last >= self.intensity.within:
            run = self._runs[child] = _FailureRun(BackoffState(self.backoff, rng=self.rng))
        run.last = now
        run.count = max(run.count, limit) + 1 if lifecycle else run.count + 1
        if run.count <= limit:
            return 0.0
        if run.count > 2 * limit:
            return None
        return run.backoff.next_delay(now)

    def failures_in_row(self, child: str) -> int:
        """The length of ``child``'s current run of failures (0: none counted)."""
        run = self._runs.get(child)
        return run.count if run is not None else 0

    def forget(self, child: str) -> None:
        """Drop the backoff state of a child that left the tree."""
        self._states.pop(child, None)
        self._runs.pop(child, None)


def crash_loop_backoff() -> Backoff:
    """The default delays of a crash loop's restarts: 0.05 s doubling to 5 s, equal jitter."""
    return Backoff(initial=0.05, maximum=5.0, multiplier=2.0, jitter="equal", reset_after=30.0)


@dataclass(frozen=True, slots=True)
class RestartPolicy:
    """How an actor without a supervisor is restarted after a failed message.

    The rule of :meth:`RestartTracker.record_failure`: a failure after the actor
    ran well restarts it at once; the first ``max_restarts`` failures in a row
    restart it at once; the next ``max_restarts`` each wait ``backoff``'s next
    delay (a crash loop, logged); one more stops the actor (an ERROR log names it
    and the cause; ``ActorSystem.stopped_by_policy`` counts it). A message handled
    successfully, or ``within`` seconds without a failure, ends the run. Set it
    per system, ``ActorSystem(restart=RestartPolicy(...))``, or per actor class
    with the ``restart_policy`` class attribute. Supervisors apply the same rule
    with their spec's ``max_restarts``, ``within`` and ``backoff``.

    With the defaults, a burst of ten poison messages costs each its own retry
    and nothing else; an actor that fails every message restarts ten times at
    once, then ten times 0.05 s doubling to 5 s (about 20 s), then stops.
    """

    max_restarts: int = 10
    within: float = 10.0
    backoff: Backoff = field(default_factory=crash_loop_backoff)

    def __post_init__(self) -> None:
        _check_intensity("restart.", self.max_restarts, self.within)
        if not isinstance(self.backoff, Backoff):
            raise ConfigError("restart.backoff", f"must be a Backoff, got {self.backoff!r}")

    def window(self) -> RestartTracker:
        """Fresh bookkeeping for one actor under this policy."""
        return RestartTracker(RestartIntensity(self.max_restarts, self.within), self.backoff)


def _check_intensity(prefix: str, max_restarts: object, within: object) -> None:
    if isinstance(max_restarts, bool) or not isinstance(max_restarts, int):
        raise ConfigError(f"{prefix}max_restarts", f"must be an int, got {max_restarts!r}")
    if max_restarts < 0:
        raise ConfigError(f"{prefix}max_restarts", f"must be zero or positive, got {max_restarts}")
    if isinstance(within, bool) or not isinstance(within, int | float) or not within > 0:
        raise ConfigError(f"{prefix}within", f"must be positive (seconds), got {within!r}")


__all__ = ["RestartIntensity", "RestartPolicy", "RestartTracker", "crash_loop_backoff"]
