"""Child specs and supervisor specs: what a supervision tree is made of, checked up front.

Every mistake a spec can hold (a child that is not an actor, duplicate names,
negative limits, an unknown strategy) raises :class:`~troupe.ConfigError` when
the spec is built, not when the tree first restarts something.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any

from troupe.actor import Actor
from troupe.backoff import Backoff
from troupe.errors import ConfigError
from troupe.mailbox import MailboxConfig

from .policy import Decider, RestartIntensity, RestartType, Strategy, default_decider

if TYPE_CHECKING:
    from troupe.ref import ActorRef
    from troupe.system import ActorSystem

#: Default stop deadline of a worker child (seconds); supervisors wait as long as it takes.
DEFAULT_SHUTDOWN = 5.0


@dataclass(frozen=True)
class ChildSpec:
    """One child of a supervisor.

    ``factory`` is an :class:`~troupe.Actor` subclass, a callable returning an
    Actor, or a :class:`SupervisorSpec` (a nested tree). ``args``/``kwargs`` go
    to it at every (re)start. ``name`` must be unique in the system (default:
    the class name, or the nested supervisor's name). ``restart``: permanent
    (always), transient (only after a failure) or temporary (never).
    ``shutdown``: seconds the child gets to stop before it is killed; ``None``
    waits as long as it takes (what a SupervisorSpec placed directly in a
    ``children`` list gets, so a subtree can stop its own children in turn).

    >>> class Db(Actor):
    ...     def receive(self, message): ...
    >>> ChildSpec(Db, name="db", restart="transient").restart
    <RestartType.TRANSIENT: 'transient'>
    """

    factory: type[Actor] | Callable[..., Actor] | SupervisorSpec
    args: tuple[Any, ...] = ()
    kwargs: Mapping[str, Any] = field(default_factory=dict)
    name: str | None = None
    restart: RestartType = RestartType.PERMANENT
    shutdown: float | None = DEFAULT_SHUTDOWN
    mailbox: MailboxConfig | None = None

    def __post_init__(self) -> None:
        factory = self.factory
        label = f"child {self.name!r}" if self.name else "child"
        if isinstance(factory, Actor):
            raise ConfigError(
                f"{label}.factory",
                f"got an instance of {type(factory).__name__}; pass the class itself",
            )
        if isinstance(factory, type) and not issubclass(factory, Actor):
            raise ConfigError(
                f"{label}.factory",
                f"{factory.__qualname__} is not an Actor subclass (nor a SupervisorSpec)",
            )
        if not isinstance(factory, SupervisorSpec) and not callable(factory):
            raise ConfigError(
                f"{label}.factory",
                f"{factory!r} is not an actor class, a factory or a SupervisorSpec",
            )
        if self.name is None:
            default = factory.name if isinstance(factory, SupervisorSpec) else None
            default = default or getattr(factory, "__name__", None)
            if not default:
                raise ConfigError("child.name", f"give a name for the child made by {factory!r}")
            object.__setattr__(self, "name", default)
        if not isinstance(self.name, str) or not self.name:
            raise ConfigError("child.name", f"must be a non-empty string, got {self.name!r}")
        if not isinstance(self.args, tuple):
            object.__setattr__(self, "args", tuple(self.args))
        if not isinstance(self.kwargs, Mapping):
            raise ConfigError(f"{label}.kwargs", f"must be a mapping, got {self.kwargs!r}")
        try:
            object.__setattr__(self, "restart", RestartType(self.restart))
        except ValueError:
            raise ConfigError(
                f"{label}.restart",
                f"unknown restart type {self.restart!r}; choose permanent, transient or temporary",
            ) from None
        shutdown = self.shutdown
        if shutdown is not None and (
            isinstance(shutdown, bool)
            or not isinstance(shutdown, int | float)
            or not shutdown >= 0
            or math.isnan(shutdown)
        ):
            raise ConfigError(
                f"{label}.shutdown", f"must be zero or more seconds, or None; got {shutdown!r}"
            )

    @property
    def child_name(self) -> str:
        """The name (always set after construction)."""
        assert self.name is not None
        return self.name


@dataclass(frozen=True)
class SupervisorSpec:
    """A supervisor and its children, validated at construction.

    ``children`` holds :class:`ChildSpec` items (an Actor subclass or a nested
    SupervisorSpec is accepted and wrapped). ``strategy``: one_for_one,
    one_for_all, rest_for_one, or simple_one_for_one (then ``children`` is the
    single template of a dynamic pool, started with ``start_child``).
    A failed child is restarted at once; one that fails again and again with no
    message handled between (a crash loop) is restarted at once ``max_restarts``
    times, then ``max_restarts`` times after ``backoff``'s delays, and one more
    failure makes the supervisor stop its children and fail (a message handled
    successfully, or ``within`` quiet seconds, ends the run: see
    ``troupe.restart.RestartTracker.record_failure``, the rule top-level actors
    follow too). Children that stop are restarted after ``backoff``'s delays, at
    most ``max_restarts`` within ``within`` seconds (OTP).
    ``decider`` maps a child's exception to a :class:`~troupe.supervisors.Directive`.

    >>> class Worker(Actor):
    ...     def receive(self, message): ...
    >>> spec = SupervisorSpec([ChildSpec(Worker, name="w1"), ChildSpec(Worker, name="w2")],
    ...                       name="workers", strategy="one_for_all")
    >>> [c.name for c in spec.children]
    ['w1', 'w2']
    """

    children: Sequence[ChildSpec | SupervisorSpec | type[Actor]] = ()
    name: str | None = None
    strategy: Strategy = Strategy.ONE_FOR_ONE
    max_restarts: int = 3
    within: float = 5.0
    backoff: Backoff = field(default_factory=Backoff.none)
    decider: Decider = default_decider

    def __post_init__(self) -> None:
        if self.name is not None and (not isinstance(self.name, str) or not self.name):
            raise ConfigError("supervisor.name", f"must be a non-empty string, got {self.name!r}")
        try:
            object.__setattr__(self, "strategy", Strategy(self.strategy))
        except ValueError:
            choices = ", ".join(s.value for s in Strategy)
            raise ConfigError(
                "supervisor.strategy", f"unknown strategy {self.strategy!r}; choose {choices}"
            ) from None
        RestartIntensity(self.max_restarts, self.within)  # validates both
        if not isinstance(self.backoff, Backoff):
            raise ConfigError("supervisor.backoff", f"must be a Backoff, got {self.backoff!r}")
        if not callable(self.decider):
            raise ConfigError("supervisor.decider", f"must be callable, got {self.decider!r}")
        if isinstance(self.children, ChildSpec | SupervisorSpec) or not isinstance(
            self.children, Sequence
        ):
            raise ConfigError("supervisor.children", "must be a list of child specs")
        children = tuple(_as_child(c, i) for i, c in enumerate(self.children))
        seen: set[str] = set()
        for i, child in enumerate(children):
            if child.name in seen:
                raise ConfigError(
                    f"children[{i}].name",
                    f"duplicate child name {child.name!r}; names must be unique in the system",
                )
            seen.add(child.child_name)
        if self.strategy is Strategy.SIMPLE_ONE_FOR_ONE and len(children) != 1:
            raise ConfigError(
                "supervisor.children",
                f"simple_one_for_one takes exactly one child spec (the template of the pool), "
                f"got {len(children)}",
            )
        object.__setattr__(self, "children", children)

    @property
    def child_specs(self) -> tuple[ChildSpec, ...]:
        """The children as ChildSpec items, in start order."""
        return self.children  # type: ignore[return-value]  # normalised in __post_init__

    def intensity(self) -> RestartIntensity:
        """A fresh restart window with this spec's limits."""
        return RestartIntensity(self.max_restarts, self.within)

    def with_name(self, name: str) -> SupervisorSpec:
        """A copy under another name."""
        return replace(self, name=name)

    def spawn(self, system: ActorSystem) -> ActorRef:
        """Start the supervisor in ``system``; its children start in order right after."""
        from .supervisor import Supervisor

        return system.spawn(Supervisor, self, name=self.name)


def _as_child(item: Any, index: int) -> ChildSpec:
    if isinstance(item, ChildSpec):
        return item
    if isinstance(item, SupervisorSpec):
        return ChildSpec(item, shutdown=None)
    if isinstance(item, type) and issubclass(item, Actor):
        return ChildSpec(item)
    raise ConfigError(
        f"children[{index}]",
        f"{item!r} is not a ChildSpec, a SupervisorSpec or an Actor subclass",
    )
