"""Links: two actors that share their fate (Erlang's ``link``).

When a linked actor fails (a handler or ``on_start`` raised) or stops with a
reason, its partners fail with :class:`LinkFailed`, and their supervisors
decide what happens to them. A normal stop only dissolves the link. Failures
travel along chains of links once: an actor already in the chain is not
failed again.
"""

from __future__ import annotations

import logging
import weakref
from functools import partial
from typing import TYPE_CHECKING

from troupe import Child, State, Terminated

from .errors import LinkFailed

if TYPE_CHECKING:
    from troupe import ActorRef, ActorSystem

logger = logging.getLogger(__name__)

__all__ = ["LinkFailed", "link", "linked", "unlink"]


class _Links:
    """The link table of one system."""

    def __init__(self, system: ActorSystem) -> None:
        self.partners: dict[Child, set[Child]] = {}
        self.propagated: dict[Child, BaseException] = {}
        system.add_failure_listener(self.on_failure)

    def add(self, a: Child, b: Child) -> None:
        for one, other in ((a, b), (b, a)):
            if one not in self.partners:
                self.partners[one] = set()
                one.watch(partial(self.on_terminated, one))
            self.partners[one].add(other)

    def remove(self, a: Child, b: Child) -> None:
        self.partners.get(a, set()).discard(b)
        self.partners.get(b, set()).discard(a)

    def on_failure(self, cell: Child, exc: BaseException) -> None:
        if cell in self.partners:
            self.propagate(cell, exc)

    def on_terminated(self, cell: Child, notice: Terminated) -> None:
        reason = notice.reason
        if reason is not None and self.propagated.get(cell) is not reason:
            self.propagate(cell, reason)
        for partner in self.partners.pop(cell, set()):
            self.partners.get(partner, set()).discard(cell)
        self.propagated.pop(cell, None)

    def propagate(self, cell: Child, exc: BaseException) -> None:
        self.propagated[cell] = exc
        if isinstance(exc, LinkFailed):
            chain, cause = exc.chain | {cell.name}, exc.cause
        else:
            chain, cause = frozenset({cell.name}), exc
        for partner in list(self.partners.get(cell, ())):
            if partner.name in chain or partner.state >= State.STOPPING:
                continue
            logger.info("actor %s fails because linked actor %s failed", partner.name, cell.name)
            partner.fail(LinkFailed(cell.name, cause, chain))


_tables: weakref.WeakKeyDictionary[ActorSystem, _Links] = weakref.WeakKeyDictionary()


def _table(system: ActorSystem) -> _Links:
    table = _tables.get(system)
    if table is None:
        table = _tables[system] = _Links(system)
    return table


def link(a: ActorRef, b: ActorRef) -> None:
    """Link ``a`` and ``b``: when either fails, the other fails with :class:`LinkFailed`.

    Both must be alive and in the same system; call it on the system's loop.
    """
    cell_a, cell_b = Child.of(a), Child.of(b)
    if cell_a.system is not cell_b.system:
        raise ValueError(f"cannot link {a.name!r} and {b.name!r}: they live in different systems")
    if cell_a == cell_b:
        raise ValueError(f"cannot link {a.name!r} to itself")
    for cell in (cell_a, cell_b):
        if cell.state is State.STOPPED:
            raise ValueError(f"cannot link {cell.name!r}: it has stopped")
    _table(cell_a.system).add(cell_a, cell_b)


def unlink(a: ActorRef, b: ActorRef) -> None:
    """Dissolve the link between ``a`` and ``b`` (nothing happens when there is none)."""
    table = _tables.get(Child.of(a).system)
    if table is not None:
        table.remove(Child.of(a), Child.of(b))


def linked(ref: ActorRef) -> list[ActorRef]:
    """The refs linked to ``ref``."""
    child = Child.of(ref)
    table = _tables.get(child.system)
    if table is None:
        return []
    return sorted((c.ref for c in table.partners.get(child, ())), key=lambda r: r.name)
