"""Supervision policy shared by actor supervisors and process supervisors.

Strategies, restart types, directives and the restart-intensity window live
here once; ``Supervisor`` (actors) and ``ProcessSupervisor`` (OS processes)
both apply them.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field
from enum import StrEnum

from troupe.errors import ConfigError


class Strategy(StrEnum):
    """Which children restart when one fails (Erlang/OTP semantics)."""

    ONE_FOR_ONE = "one_for_one"  # only the failed child
    ONE_FOR_ALL = "one_for_all"  # every child
    REST_FOR_ONE = "rest_for_one"  # the failed child and those started after it
    SIMPLE_ONE_FOR_ONE = "simple_one_for_one"  # a dynamic pool of identical children


class RestartType(StrEnum):
    """When a child that ended is restarted."""

    PERMANENT = "permanent"  # always
    TRANSIENT = "transient"  # only after an abnormal exit
    TEMPORARY = "temporary"  # never


class Directive(StrEnum):
    """What a supervisor does with a failed child."""

    RESUME = "resume"  # keep the instance and its state, drop the failing message
    RESTART = "restart"  # fresh instance, same mailbox and ref
    STOP = "stop"
    ESCALATE = "escalate"  # fail the supervisor itself


def should_restart(restart: RestartType, abnormal: bool) -> bool:
    """True when a child of this restart type is restarted after this kind of exit."""
    if restart is RestartType.PERMANENT:
        return True
    if restart is RestartType.TRANSIENT:
        return abnormal
    return False


def children_to_restart(strategy: Strategy, order: list[str], failed: str) -> list[str]:
    """Names (in start order) that restart when ``failed`` fails under ``strategy``."""
    if strategy is Strategy.ONE_FOR_ALL:
        return list(order)
    if strategy is Strategy.REST_FOR_ONE:
        return order[order.index(failed) :]
    return [failed]


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
        if isinstance(self.max_restarts, bool) or not isinstance(self.max_restarts, int):
            raise ConfigError("max_restarts", f"must be an int, got {self.max_restarts!r}")
        if self.max_restarts < 0:
            raise ConfigError("max_restarts", f"must be zero or positive, got {self.max_restarts}")
        if not self.within > 0:
            raise ConfigError("within", f"must be positive, got {self.within!r}")

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
