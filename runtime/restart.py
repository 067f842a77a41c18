"""Restart intensity and backoff: the policy every supervisor applies, the top level too.

``RestartIntensity`` is OTP's intensity/period window; ``RestartTracker`` adds a
:class:`~troupe.BackoffState` per child. ``RestartPolicy`` is what the system
applies to an actor that no supervisor handles (a top-level actor, or the
child of a plain actor): restart after a backoff delay, and stop it once it
failed more than ``max_restarts`` times within ``within`` seconds.

>>> policy = RestartPolicy(max_restarts=2, within=10.0, backoff=Backoff.none())
>>> window = policy.window()
>>> [window.record("a", now) for now in (0.0, 1.0, 2.0)]
[0.0, 0.0, None]
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
class RestartTracker:
    """The restart bookkeeping of one supervisor: its intensity window plus one
    :class:`BackoffState` per child (keyed by name).

    >>> tracker = RestartTracker(RestartIntensity(1, within=10), Backoff.none())
    >>> tracker.record("db", now=0.0), tracker.record("db", now=1.0)
    (0.0, None)
    """

    intensity: RestartIntensity
    backoff: Backoff
    rng: random.Random = field(default_factory=derived_random, repr=False)
    _states: dict[str, BackoffState] = field(default_factory=dict, repr=False)

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

    def forget(self, child: str) -> None:
        """Drop the backoff state of a child that left the tree."""
        self._states.pop(child, None)


def _default_backoff() -> Backoff:
    return Backoff(initial=0.05, maximum=5.0, multiplier=2.0, jitter="equal", reset_after=30.0)


@dataclass(frozen=True, slots=True)
class RestartPolicy:
    """How an actor without a supervisor is restarted after a failed message.

    Each restart waits ``backoff``'s next delay; more than ``max_restarts``
    failures within ``within`` seconds stop the actor (an ERROR log names it and
    the cause; ``ActorSystem.stopped_by_policy`` counts it). Set it per system,
    ``ActorSystem(restart=RestartPolicy(...))``, or per actor class with the
    ``restart_policy`` class attribute. An actor that fails in ``on_start`` is
    stopped at once: a restart would only repeat it.

    The defaults suit actors that a broker bridge feeds: one poison message
    failing its ``max_deliveries`` attempts in a few seconds does not stop its
    target; a failure loop faster than the backoff lets through does.
    """

    max_restarts: int = 10
    within: float = 10.0
    backoff: Backoff = field(default_factory=_default_backoff)

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


__all__ = ["RestartIntensity", "RestartPolicy", "RestartTracker"]
