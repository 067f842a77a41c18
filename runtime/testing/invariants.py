"""Invariant helpers: checks that fail with a message saying what broke.

>>> no_message_lost(sent=[1, 2, 3], received=[3, 1, 2, 2])
>>> no_effect_twice(["charge o1", "charge o2"])
>>> no_effect_twice(["charge o1", "charge o1"])
Traceback (most recent call last):
AssertionError: 1 effect(s) happened more than once: 'charge o1' x2

Saga outcomes are checked by ``troupe.actors.testing.sagas_settled``.
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Hashable, Iterable
from typing import TYPE_CHECKING

from troupe.state import State

if TYPE_CHECKING:
    from troupe.child import Child
    from troupe.system import ActorSystem

logger = logging.getLogger(__name__)

_SHOWN = 10


def no_message_lost(sent: Iterable[Hashable], received: Iterable[Hashable]) -> None:
    """Every sent item was received at least once."""
    got = set(received)
    missing = [item for item in sent if item not in got]
    if missing:
        shown = ", ".join(map(repr, missing[:_SHOWN]))
        raise AssertionError(f"{len(missing)} message(s) lost: {shown}")


def no_effect_twice(effects: Iterable[Hashable]) -> None:
    """No effect appears more than once."""
    twice = [(e, n) for e, n in Counter(effects).items() if n > 1]
    if twice:
        shown = ", ".join(f"{e!r} x{n}" for e, n in twice[:_SHOWN])
        raise AssertionError(f"{len(twice)} effect(s) happened more than once: {shown}")


def exactly_once(sent: Iterable[Hashable], effects: Iterable[Hashable]) -> None:
    """Every sent item had its effect, and no effect happened twice."""
    effects = list(effects)
    no_message_lost(sent, effects)
    no_effect_twice(effects)


def _walk(children: Iterable[Child]) -> Iterable[Child]:
    for child in children:
        yield child
        yield from _walk(child.children())


def tree_healthy(system: ActorSystem, *, escalated: bool | None = None) -> None:
    """The supervision tree is healthy, or gave up as its policy says.

    Healthy: every live actor is running (none suspended, restarting or
    stopping) and the system did not fail. Escalated: a root supervisor gave
    up, so ``system.failure`` is set. ``escalated`` True or False demands one
    of the two; None (default) accepts either. Call it once the system is idle.
    """
    failure = system.failure
    if escalated is True and failure is None:
        raise AssertionError("expected the tree to escalate to the system; it did not fail")
    if failure is not None:
        if escalated is False:
            raise AssertionError(f"the system failed: {type(failure).__name__}: {failure}")
        return
    bad = [
        f"{child.name} is {child.state.name}"
        for child in _walk(system.top_level())
        if child.state is not State.RUNNING
    ]
    if bad:
        raise AssertionError("unhealthy actors: " + ", ".join(bad[:_SHOWN]))


__all__ = ["exactly_once", "no_effect_twice", "no_message_lost", "tree_healthy"]
