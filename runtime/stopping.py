"""Stopping: an orderly stop (children first, then ``on_stop``), a kill, and the end.

At the end the mailbox's messages go to dead letters (a waiting asker gets
``ActorStopped``, with the stop's reason as ``__cause__``), the name is freed,
the parent forgets the child and death watchers are told.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from typing import TYPE_CHECKING, Any

from .dead_letters import RECIPIENT_STOPPED
from .envelope import Envelope
from .errors import ActorStopped
from .state import State

if TYPE_CHECKING:
    from .cell import ActorCell

logger = logging.getLogger(__name__)


def _stopped_by(envelope: Envelope, name: str, reason: BaseException) -> None:
    """Settle a waiting sender with ActorStopped whose ``__cause__`` is ``reason``."""
    reply = envelope.reply
    if reply is not None and not reply.done():
        error = ActorStopped(name)
        error.__cause__ = reason
        reply.set_exception(error)


def stopped(self: ActorCell) -> asyncio.Future[None]:
    """A future that resolves once the actor has stopped."""
    if self._stopped is None:
        self._stopped = self._loop.create_future()
        if self.state is State.STOPPED:
            self._stopped.set_result(None)
    return self._stopped


def request_stop(self: ActorCell, reason: BaseException | None = None) -> asyncio.Future[None]:
    """Stop after the current message; pending messages go to dead letters."""
    if threading.get_ident() != self._thread_id:
        raise RuntimeError("stop() must be called on the system's loop; use SyncActorSystem.stop")
    future = self.stopped()
    if self.state < State.STOPPING:
        self.send_system(lambda: self._begin_stop(reason))
    return future


def _begin_stop(self: ActorCell, reason: BaseException | None) -> None:
    if self.state >= State.STOPPING:
        return
    self.state = State.STOPPING
    if self._timers is not None:
        self._timers.cancel_all()
    self._run_lifecycle(self._stop_sequence(reason))


async def _stop_sequence(self: ActorCell, reason: BaseException | None) -> None:
    await self._stop_children(reason)
    try:
        await self._call_hook("on_stop")
    except Exception:
        logger.exception("on_stop of %s failed", self.name)
    self._terminate(reason)


async def _stop_children(self: ActorCell, reason: BaseException | None) -> None:
    if not self.children:
        return
    for child in reversed(list(self.children.values())):
        await child.stop_within(child.shutdown_timeout)


async def stop_within(
    self: ActorCell, timeout: float | None, reason: BaseException | None = None
) -> None:
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


def kill(self: ActorCell, reason: BaseException | None = None) -> None:
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


def _terminate(self: ActorCell, reason: BaseException | None) -> None:
    self.state = State.STOPPED
    if self._backoff is not None:
        self._backoff.cancel()
        self._backoff = None
    self.actor._troupe_release()
    for item in self.mailbox.drain():
        if reason is not None and type(item) is Envelope:
            _stopped_by(item, self.name, reason)
        self._undeliverable(item, RECIPIENT_STOPPED)
    self.mailbox.system = None
    self.system.unregister(self)
    if self.parent is not None and self.parent.children:
        self.parent.children.pop(self.name, None)
    if self.watchers:
        self._notify_watchers(reason)
    if self._stopped is not None and not self._stopped.done():
        self._stopped.set_result(None)


def cancel_tasks(self: ActorCell) -> None:
    """Cancel the cell's running turn and lifecycle step (used past a shutdown deadline)."""
    for task in (self._task, self._lifecycle):
        if task is not None and not task.done():
            task.cancel()


def live_tasks(self: ActorCell) -> list[asyncio.Task[Any]]:
    """The cell's tasks that have not finished."""
    return [t for t in (self._task, self._lifecycle) if t is not None and not t.done()]
