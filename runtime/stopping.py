"""``Stopping``, a part of the cell (:mod:`troupe.cell`): an orderly stop, a kill, the end.

An orderly stop stops the children first, then runs ``on_stop``. At the end the
mailbox's messages go to dead letters (a waiting asker gets ``ActorStopped``,
with the stop's reason as ``__cause__``), the name is freed, the parent forgets
the child and death watchers are told.

An idle actor with nothing to wait for (no children, no lifecycle step or turn
in progress, and no ``on_stop`` or a plain ``def`` one) stops at once with
``stop_idle``: no task, no future, O(1) work. Shutdown and a parent's stop
of its children use it, so a million idle actors stop in seconds.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import Awaitable
from typing import Any

from .actor import Actor, is_async_callable
from .cell_state import CellState
from .dead_letters import RECIPIENT_STOPPED
from .envelope import Envelope
from .errors import ActorStopped
from .state import State

logger = logging.getLogger(__name__)


def _stopped_by(envelope: Envelope, name: str, reason: BaseException) -> None:
    """Settle a waiting sender with ActorStopped whose ``__cause__`` is ``reason``."""
    reply = envelope.reply
    if reply is not None and not reply.done():
        error = ActorStopped(name)
        error.__cause__ = reason
        reply.set_exception(error)


#: Idle children stopped in a row before the parent lets the loop run other work.
STOP_BATCH = 512


#: Per actor class: 0 no on_stop, 1 a plain ``def`` on_stop run on the loop, 2 one that
#: must be awaited (``async def``, or run elsewhere as a ThreadActor's hooks are).
_ON_STOP_KIND: dict[type, int] = {}


def on_stop_kind(actor: Actor) -> int:
    """How ``actor``'s ``on_stop`` runs (see ``_ON_STOP_KIND``)."""
    cls = type(actor)
    kind = _ON_STOP_KIND.get(cls)
    if kind is None:
        if cls.on_stop is Actor.on_stop:
            kind = 0
        elif cls._troupe_call_hook is not Actor._troupe_call_hook or is_async_callable(cls.on_stop):
            kind = 2
        else:
            kind = 1
        _ON_STOP_KIND[cls] = kind
    return kind


class Stopping(CellState):
    """An orderly stop, a kill, and the end."""

    __slots__ = ()

    def stopped(self) -> asyncio.Future[None]:
        """A future that resolves once the actor has stopped."""
        if self._stopped is None:
            self._stopped = self._loop.create_future()
            if self.state is State.STOPPED:
                self._stopped.set_result(None)
        return self._stopped

    def request_stop(self, reason: BaseException | None = None) -> asyncio.Future[None]:
        """Stop after the current message; pending messages go to dead letters."""
        if threading.get_ident() != self._thread_id:
            raise RuntimeError(
                "stop() must be called on the system's loop; use SyncActorSystem.stop"
            )
        future = self.stopped()
        if self.state < State.STOPPING:
            self.send_system(lambda: self._begin_stop(reason))
        return future

    def _begin_stop(self, reason: BaseException | None) -> None:
        if self.state >= State.STOPPING:
            return
        self.state = State.STOPPING
        if self._timers is not None:
            self._timers.cancel_all()
        self._run_lifecycle(self._stop_sequence(reason))

    async def _stop_sequence(self, reason: BaseException | None) -> None:
        await self._stop_children(reason)
        begun = self.system.on_stop_begun
        if begun is not None:
            begun.add(self)  # a shutdown past its deadline does not count it as skipped
        try:
            await self._call_hook("on_stop")
        except Exception:
            logger.exception("on_stop of %s failed", self.name)
        self._terminate(reason)

    async def _stop_children(self, reason: BaseException | None) -> None:
        """Stop the children one after another, the last spawned first; idle ones at once."""
        if not self.children:
            return
        batch = 0
        for child in reversed(list(self.children.values())):
            if child.stop_idle():
                batch += 1
                if batch >= STOP_BATCH:
                    batch = 0
                    await asyncio.sleep(0)
                if child.state is State.STOPPED:
                    continue
            await child.stop_within(child.shutdown_timeout)

    def has_on_stop(self) -> bool:
        """True when the actor defines an ``on_stop`` hook."""
        return on_stop_kind(self.actor) != 0

    def stop_idle(self) -> bool:
        """Stop now, without a task, if the actor is idle with nothing to wait for.

        Idle: running or suspended, no turn scheduled, no lifecycle step in
        progress, no system message queued and no children; its ``on_stop`` is
        absent or a plain ``def`` (run here). Returns False, doing nothing, for any
        other actor (stop it with ``request_stop``). True means it stopped, or, if
        a plain ``on_stop`` returned an awaitable, that its stop is under way
        (``stopped()`` resolves once it ends).
        """
        state = self.state
        if (
            (state is not State.RUNNING and state is not State.SUSPENDED)
            or self._scheduled
            or self.children
            or self.mailbox.system
            or (self._lifecycle is not None and not self._lifecycle.done())
        ):
            return False
        kind = on_stop_kind(self.actor)
        if kind == 2:
            return False
        self.state = State.STOPPING
        if self._timers is not None:
            self._timers.cancel_all()
        if kind == 1:
            try:
                result = self.actor.on_stop()
            except Exception:
                logger.exception("on_stop of %s failed", self.name)
            else:
                if isinstance(result, Awaitable):
                    self._run_lifecycle(self._finish_stop(result))
                    return True
        self._terminate(None)
        return True

    async def _finish_stop(self, pending: Awaitable[Any]) -> None:
        """A plain ``on_stop`` returned an awaitable: await it, then end."""
        try:
            await pending
        except Exception:
            logger.exception("on_stop of %s failed", self.name)
        self._terminate(None)

    async def stop_within(self, timeout: float | None, reason: BaseException | None = None) -> None:
        """Stop (see ``request_stop``) and wait; past ``timeout`` seconds of the system's
        clock, ``kill`` it. ``None`` waits as long as it takes."""
        stopped = self.request_stop(reason)
        if timeout is None or stopped.done():
            await stopped
            return
        handle = self.system.clock.call_later(timeout, self.kill, reason)
        try:
            await stopped
        finally:
            handle.cancel()

    def kill(self, reason: BaseException | None = None) -> None:
        """Terminate at once: cancel the running handler and lifecycle step, kill the
        children, skip ``on_stop``. Queued messages go to dead letters."""
        if self.state is State.STOPPED:
            return
        self.state = State.STOPPING
        if self._timers is not None:
            self._timers.cancel_all()
        if self.children:
            for child in reversed(list(self.children.values())):
                child.kill(reason)
        self.cancel_tasks()
        self._terminate(reason)

    def _terminate(self, reason: BaseException | None) -> None:
        self.state = State.STOPPED
        if self._backoff is not None:
            self._backoff.cancel()
            self._backoff = None
        self.actor._troupe_release()
        mailbox = self.mailbox
        if mailbox.queue or mailbox.waiters:
            for item in mailbox.drain():
                if reason is not None and type(item) is Envelope:
                    _stopped_by(item, self.name, reason)
                self._undeliverable(item, RECIPIENT_STOPPED)
        mailbox.system = None
        mailbox.release()
        self.system.unregister(self)
        if self.parent is not None and self.parent.children:
            self.parent.children.pop(self.name, None)
        if self.watchers:
            self._notify_watchers(reason)
        if self._stopped is not None and not self._stopped.done():
            self._stopped.set_result(None)

    def cancel_tasks(self) -> int:
        """Cancel the cell's running turn and lifecycle step (used past a shutdown deadline);
        returns how many tasks were cancelled."""
        cancelled = 0
        for task in (self._task, self._lifecycle):
            if task is not None and not task.done() and task.cancel():
                cancelled += 1
        return cancelled

    def live_tasks(self) -> list[asyncio.Task[Any]]:
        """The cell's tasks that have not finished."""
        return [t for t in (self._task, self._lifecycle) if t is not None and not t.done()]
