"""Fault plans: which faults to inject, where and when — plain data, printable and replayable.

A fault names its target with a glob pattern (an actor name such as
``"worker-*"``, or a stream for broker faults) and fires either at the
target's ``at``-th message (1-based, once per matching target) or on each
message with probability ``p`` (drawn from the run's seeded random source).
The ``repr`` of a plan is Python that rebuilds it, so a failure report can
print a one-line replay call.

>>> plan = FaultPlan(Crash("worker-*", at=3), Drop("sink", p=0.25))
>>> plan
FaultPlan(Crash('worker-*', at=3), Drop('sink', p=0.25))
>>> eval(repr(plan)) == plan
True

Actor faults (applied by :class:`~troupe.testing.FaultInjector` through the
handler hook, in simulations and real runs): :class:`Crash` (the handler
raises :class:`InjectedFault` instead of running), :class:`Drop` (a tell is
lost: the handler does not run; asks and broker deliveries are never
dropped), :class:`Delay` (a tell is taken out and told again ``seconds``
later: later messages overtake it). Broker faults, applied to consumer
sessions by ``troupe.brokers.faults``: :class:`Duplicate` (a
fetched delivery is handed out again with the next fetch; ``at`` counts
fetched deliveries), :class:`Redeliver` (an ack is lost: the entry stays
pending and is delivered again; ``at`` counts acked deliveries),
:class:`Disconnect` (a fetch fails as a lost connection; ``at`` counts
fetches).
"""

from __future__ import annotations

import fnmatch
import logging
from dataclasses import dataclass, fields
from typing import ClassVar

from troupe.errors import ConfigError

logger = logging.getLogger(__name__)


class InjectedFault(Exception):
    """The exception an injected crash raises (a test can tell it from a real bug)."""


@dataclass(frozen=True)
class Fault:
    """A fault on ``target`` (a glob pattern) at its ``at``-th message or with probability ``p``."""

    target: str
    at: int | None = None
    p: float = 0.0

    #: what the fault applies to: "actor" (handler hook) or "stream" (broker sessions)
    scope: ClassVar[str] = "actor"

    def __post_init__(self) -> None:
        kind = type(self).__name__
        if type(self.target) is not str or not self.target:
            raise ConfigError(f"{kind}.target", f"must be a non-empty pattern, got {self.target!r}")
        if self.at is not None and (type(self.at) is not int or self.at < 1):
            raise ConfigError(f"{kind}.at", f"must be a message number >= 1, got {self.at!r}")
        if isinstance(self.p, bool) or not isinstance(self.p, int | float) or not 0 <= self.p <= 1:
            raise ConfigError(f"{kind}.p", f"must be a probability 0..1, got {self.p!r}")
        if self.at is None and self.p == 0:
            raise ConfigError(f"{kind}.at", "give a message number (at=) or a probability (p=)")

    def matches(self, name: str) -> bool:
        """True when ``name`` (an actor or a stream) is this fault's target."""
        return fnmatch.fnmatchcase(name, self.target)

    def __repr__(self) -> str:
        parts = [repr(self.target)]
        for f in fields(self)[1:]:
            value = getattr(self, f.name)
            if value != f.default:
                parts.append(f"{f.name}={value!r}")
        return f"{type(self).__name__}({', '.join(parts)})"


@dataclass(frozen=True, repr=False)
class Crash(Fault):
    """The target actor's handler raises :class:`InjectedFault` instead of handling."""


@dataclass(frozen=True, repr=False)
class Drop(Fault):
    """A tell to the target actor is lost (in-process delivery is at-most-once)."""


@dataclass(frozen=True, repr=False)
class Delay(Fault):
    """A tell to the target actor arrives ``seconds`` later, overtaken by later ones."""

    seconds: float = 1.0

    def __post_init__(self) -> None:
        super().__post_init__()
        if not isinstance(self.seconds, int | float) or self.seconds <= 0:
            raise ConfigError("Delay.seconds", f"must be positive, got {self.seconds!r}")


@dataclass(frozen=True, repr=False)
class Duplicate(Fault):
    """A delivery from the target stream is handed to the consumer twice."""

    scope: ClassVar[str] = "stream"


@dataclass(frozen=True, repr=False)
class Redeliver(Fault):
    """An ack on the target stream is lost: the entry stays pending and comes again."""

    scope: ClassVar[str] = "stream"


@dataclass(frozen=True, repr=False)
class Disconnect(Fault):
    """A fetch on the target stream fails as a lost connection (the bridge reconnects)."""

    scope: ClassVar[str] = "stream"


class FaultPlan:
    """An ordered set of faults for one run; ``FaultPlan()`` injects nothing."""

    __slots__ = ("faults",)

    def __init__(self, *faults: Fault) -> None:
        for fault in faults:
            if not isinstance(fault, Fault):
                raise ConfigError("faults", f"a FaultPlan takes Fault objects, got {fault!r}")
        self.faults: tuple[Fault, ...] = faults

    def for_scope(self, scope: str) -> tuple[Fault, ...]:
        """The faults applied by one layer (``actor`` or ``stream``)."""
        return tuple(f for f in self.faults if f.scope == scope)

    def __bool__(self) -> bool:
        return bool(self.faults)

    def __len__(self) -> int:
        return len(self.faults)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, FaultPlan) and other.faults == self.faults

    def __hash__(self) -> int:
        return hash(self.faults)

    def __repr__(self) -> str:
        return f"FaultPlan({', '.join(map(repr, self.faults))})"


__all__ = [
    "Crash",
    "Delay",
    "Disconnect",
    "Drop",
    "Duplicate",
    "Fault",
    "FaultPlan",
    "InjectedFault",
    "Redeliver",
]
