"""Supervision policy shared by actor supervisors and process supervisors.

Strategies, restart types, directives and the restart-intensity window live
here once; ``Supervisor`` (actors) and ``ProcessSupervisor`` (OS processes)
both apply them.
"""

from __future__ import annotations

import random
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from enum import StrEnum

from troupe.backoff import Backoff, BackoffState
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


@dataclass(frozen=True, slots=True)
class RestartPlan:
    """What a supervisor does after one child ended.

    ``restart``: children to restart, in start order (the ended one included);
    ``remove``: children to stop (when still running) and forget — the ended
    child when its restart type says so, and temporary siblings a group restart
    takes down (OTP does not bring those back).
    """

    restart: tuple[str, ...]
    remove: tuple[str, ...]


def plan_restart(
    strategy: Strategy,
    children: Sequence[tuple[str, RestartType]],
    ended: str,
    abnormal: bool,
) -> RestartPlan:
    """The plan when ``ended`` (one of the live ``children``, in start order) ended.

    >>> kids = [("db", RestartType.PERMANENT), ("cache", RestartType.TEMPORARY),
    ...         ("api", RestartType.TRANSIENT)]
    >>> plan_restart(Strategy.ONE_FOR_ALL, kids, "api", abnormal=True)
    RestartPlan(restart=('db', 'api'), remove=('cache',))
    >>> plan_restart(Strategy.REST_FOR_ONE, kids, "api", abnormal=False)
    RestartPlan(restart=(), remove=('api',))
    """
    types = dict(children)
    if ended not in types:
        raise KeyError(f"{ended!r} is not one of the children {list(types)}")
    if not should_restart(types[ended], abnormal):
        return RestartPlan((), (ended,))
    affected = children_to_restart(strategy, [name for name, _ in children], ended)
    restart = tuple(n for n in affected if n == ended or types[n] is not RestartType.TEMPORARY)
    remove = tuple(n for n in affected if n != ended and types[n] is RestartType.TEMPORARY)
    return RestartPlan(restart, remove)


#: Maps a child's exception to what its supervisor does.
Decider = Callable[[BaseException], Directive]


def default_decider(exc: BaseException) -> Directive:
    """Restart, whatever the exception (OTP's behaviour)."""
    return Directive.RESTART


def decider(
    directives: Mapping[type[BaseException], Directive | str],
    default: Directive | str = Directive.RESTART,
) -> Decider:
    """A decider from exception types; the most specific class in the exception's MRO wins.

    >>> decide = decider({KeyError: "resume", LookupError: "stop"})
    >>> decide(KeyError()), decide(IndexError()), decide(ValueError())
    (<Directive.RESUME: 'resume'>, <Directive.STOP: 'stop'>, <Directive.RESTART: 'restart'>)
    """
    table: dict[type[BaseException], Directive] = {}
    for exc_type, directive in directives.items():
        if not (isinstance(exc_type, type) and issubclass(exc_type, BaseException)):
            raise ConfigError("decider", f"keys must be exception classes, got {exc_type!r}")
        table[exc_type] = _directive(directive)
    fallback = _directive(default)

    def decide(exc: BaseException) -> Directive:
        for cls in type(exc).__mro__:
            found = table.get(cls)
            if found is not None:
                return found
        return fallback

    return decide


def _directive(value: Directive | str) -> Directive:
    try:
        return Directive(value)
    except ValueError:
        choices = ", ".join(d.value for d in Directive)
        raise ConfigError("decider", f"unknown directive {value!r}; choose {choices}") from None


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
    rng: random.Random = field(default_factory=random.Random, repr=False)
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
