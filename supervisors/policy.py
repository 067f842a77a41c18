"""Supervision policy shared by actor supervisors and process supervisors.

Strategies, restart types, directives and the restart-intensity window live
here once; ``Supervisor`` (actors) and ``ProcessSupervisor`` (OS processes)
both apply them.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from enum import StrEnum

from troupe.errors import ConfigError
from troupe.restart import RestartIntensity, RestartTracker


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


#: The intensity window and per-child backoff live in the core (the top level applies
#: them too); re-exported here for supervisors.
__all__ = [
    "Decider",
    "Directive",
    "RestartIntensity",
    "RestartPlan",
    "RestartTracker",
    "RestartType",
    "Strategy",
    "children_to_restart",
    "decider",
    "default_decider",
    "plan_restart",
    "should_restart",
]
