"""``Trace``: what happened in a run, in order, comparable between runs.

Each handled message (and each injected fault) is one :class:`TraceEvent`:
the step of the loop, the virtual time, the actor, what happened and a
description of the message with memory addresses removed, so two runs of the
same seed compare equal event for event.

>>> trace = Trace()
>>> trace.record(0.5, "counter", "handle", ("add", 1))
>>> trace.events[0].line()
"t=0.5 counter handle ('add', 1)"
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

logger = logging.getLogger(__name__)

_ADDRESS = re.compile(r" at 0x[0-9a-fA-F]+")
_MAX_DETAIL = 200


def describe(message: Any) -> str:
    """A stable description of ``message``: its repr without memory addresses, cut short."""
    try:
        text = repr(message)
    except Exception as exc:  # a broken __repr__ must not break the run
        text = f"<{type(message).__name__}: repr failed: {type(exc).__name__}>"
    text = _ADDRESS.sub("", text)
    return text if len(text) <= _MAX_DETAIL else text[: _MAX_DETAIL - 3] + "..."


@dataclass(frozen=True, slots=True)
class TraceEvent:
    """One thing that happened: ``kind`` is ``handle``, a fault's name or a user note."""

    step: int
    time: float
    actor: str
    kind: str
    detail: str

    def line(self) -> str:
        """The event as one line (without the step)."""
        return f"t={self.time:g} {self.actor} {self.kind} {self.detail}"


@dataclass
class Trace:
    """The events of one run, in the order they happened.

    ``step`` is read from the simulated loop when there is one (how many
    callbacks it ran), so equal traces mean the same interleaving.
    """

    events: list[TraceEvent] = field(default_factory=list)
    loop_steps: Any = None  # a callable giving the loop's step count, set by the simulation

    def record(self, time: float, actor: str, kind: str, message: Any) -> None:
        """Append one event (``message`` is described with :func:`describe`)."""
        step = self.loop_steps() if self.loop_steps is not None else len(self.events)
        self.events.append(TraceEvent(step, time, actor, kind, describe(message)))

    def lines(self) -> list[str]:
        """Every event as a line, with its step: equal lists mean equal runs."""
        return [f"{e.step:>6} {e.line()}" for e in self.events]

    def of(self, actor: str) -> list[TraceEvent]:
        """The events of one actor."""
        return [e for e in self.events if e.actor == actor]

    def kinds(self, kind: str) -> list[TraceEvent]:
        """The events of one kind (``handle``, ``crash``, ``drop``, ...)."""
        return [e for e in self.events if e.kind == kind]

    def tail(self, count: int = 20) -> str:
        """The last ``count`` events as text (for failure reports)."""
        return "\n".join(self.lines()[-count:])

    def __iter__(self) -> Iterator[TraceEvent]:
        return iter(self.events)

    def __len__(self) -> int:
        return len(self.events)


__all__ = ["Trace", "TraceEvent", "describe"]
