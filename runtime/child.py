"""``Child``: the public handle supervision code has on an actor.

A supervisor (any actor that overrides ``Actor.on_child_failure``), links and
tooling act on actors through it — restart, resume, stop, kill, fail,
escalate, death watch — never through the runtime's internals.

>>> from troupe import Actor, Child
>>> class Parent(Actor):
...     def on_child_failure(self, child: Child, exc: BaseException) -> None:
...         child.restart(delay=0.5)   # or resume(), stop(exc), escalate on self
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any

from .state import State, Terminated

if TYPE_CHECKING:
    from .actor import Actor
    from .cell import ActorCell
    from .ref import ActorRef
    from .system import ActorSystem


class Child:
    """A live (or stopped) actor as its supervisor sees it.

    Get one from ``Child.of(ref)``, ``Actor.on_child_failure``,
    ``ActorSystem.top_level()`` or ``Child.children()``. Call its methods on
    the system's loop thread. Two handles on the same actor compare equal.
    """

    __slots__ = ("_cell",)

    def __init__(self, cell: ActorCell) -> None:
        self._cell = cell

    @classmethod
    def of(cls, ref: ActorRef) -> Child:
        """The handle of the actor behind ``ref``."""
        return cls(ref._cell)

    # -- what it is -----------------------------------------------------------------------

    @property
    def name(self) -> str:
        return self._cell.name

    @property
    def ref(self) -> ActorRef:
        return self._cell.ref

    @property
    def system(self) -> ActorSystem:
        return self._cell.system

    @property
    def parent(self) -> ActorRef | None:
        """The parent's ref; None for a top-level actor."""
        parent = self._cell.parent
        return parent.ref if parent is not None else None

    @property
    def actor(self) -> Actor:
        """The current instance (replaced by a restart). For inspection, not for calls."""
        return self._cell.actor

    @property
    def state(self) -> State:
        return self._cell.state

    @property
    def restarts(self) -> int:
        """How often this actor was restarted in place."""
        return self._cell.restarts

    @property
    def failure(self) -> BaseException | None:
        """The exception it is suspended with, while it waits for a directive."""
        return self._cell.failure

    @property
    def failed_in_start(self) -> bool:
        """True when the pending failure came from ``on_start``/``on_restart``."""
        return self._cell.failed_in_start

    @property
    def failed_after_success(self) -> bool:
        """True when the pending failure came after a message it handled successfully
        since its previous failure: it ran well, so the failure is the message's, not a
        crash loop (see :meth:`~troupe.restart.RestartTracker.record_failure`)."""
        return self._cell.failed_after_success

    @property
    def failure_answered(self) -> bool:
        """True when the pending failure was answered: an ask's (the asker got the
        exception) or a redelivered message's (a bridge retries it). Such a failure is
        the message's and counts toward no crash loop."""
        return self._cell.failure_answered

    @property
    def mailbox_depth(self) -> int:
        """Queued plus parked user messages."""
        mailbox = self._cell.mailbox
        return len(mailbox) + mailbox.waiting

    @property
    def shutdown_timeout(self) -> float | None:
        """Seconds its parent waits for it to stop before killing it (None: no limit)."""
        return self._cell.shutdown_timeout

    @shutdown_timeout.setter
    def shutdown_timeout(self, seconds: float | None) -> None:
        self._cell.shutdown_timeout = seconds

    def children(self) -> list[Child]:
        """Its live children, in the order they stop in reverse (start order by default)."""
        kids = self._cell.children
        return [Child(cell) for cell in kids.values()] if kids else []

    def order_children(self, names: Iterable[str]) -> None:
        """Put the children named in ``names`` first, in that order (others keep theirs):
        children stop in reverse of this order."""
        cell = self._cell
        kids = cell.children
        if not kids:
            return
        ordered = {n: kids[n] for n in names if n in kids}
        for n, c in kids.items():
            ordered.setdefault(n, c)
        cell.children = ordered

    # -- directives -----------------------------------------------------------------------

    def restart(self, delay: float = 0.0) -> None:
        """Replace the instance after ``delay`` seconds; ref and mailbox survive. A running
        actor restarts between two messages."""
        cell = self._cell
        if cell.state is State.RUNNING or cell.state is State.STARTING:
            cell.send_system(lambda: cell.restart(delay))
        else:
            cell.restart(delay)

    def resume(self) -> None:
        """Keep the failed instance and its state; continue with the next message."""
        self._cell.resume()

    def stop(self, reason: BaseException | None = None) -> asyncio.Future[None]:
        """Stop after the current message (children first, then ``on_stop``); watchers get
        ``Terminated(ref, reason)``. The future resolves once it stopped."""
        return self._cell.request_stop(reason)

    async def stop_within(self, timeout: float | None, reason: BaseException | None = None) -> None:
        """``stop`` and wait; past ``timeout`` seconds of the system's clock, ``kill`` it."""
        await self._cell.stop_within(timeout, reason)

    def kill(self, reason: BaseException | None = None) -> None:
        """Terminate at once: cancel the running handler, kill the children, skip
        ``on_stop``; queued messages go to dead letters."""
        self._cell.kill(reason)

    def fail(self, exc: BaseException) -> None:
        """Fail it from outside a handler (a linked actor died): it is suspended and its
        supervisor decides, as after a handler exception. No-op unless it is running."""
        self._cell.fail(exc)

    def escalate(self, exc: BaseException) -> None:
        """Like :meth:`fail`, for a supervisor passing a failure it does not handle up to
        its own supervisor; counted in ``troupe_escalations_total``."""
        self._cell.fail(exc, escalated=True)

    def note_restart(self) -> None:
        """Count a restart in metrics and ``ActorSystem.restarts`` for an actor its
        supervisor started again as a new actor (a permanent child that had stopped)."""
        self._cell.system.note_restart(self._cell)

    async def wait_started(self) -> None:
        """Wait until ``on_start`` (or a restart's ``on_restart``) has finished or failed."""
        await self._cell.wait_started()

    def call_soon(self, fn: Callable[[], Any]) -> None:
        """Run ``fn()`` in the actor's control lane: after its current message, ahead of
        queued user messages, never concurrently with its handler. Any thread."""
        self._cell.send_system(fn)

    # -- death watch ------------------------------------------------------------------------

    def watch(self, callback: Callable[[Terminated], Any]) -> None:
        """Call ``callback(Terminated(ref, reason))`` once it stops (at once if it has)."""
        self._cell.add_watcher(callback)

    def unwatch(self, callback: Callable[[Terminated], Any]) -> None:
        """Stop calling ``callback`` when it stops."""
        self._cell.remove_watcher(callback)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Child) and other._cell is self._cell

    def __hash__(self) -> int:
        return id(self._cell)

    def __repr__(self) -> str:
        return f"<Child {self._cell.name} {self._cell.state.name}>"


__all__ = ["Child"]
