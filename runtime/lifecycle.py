"""``Lifecycle``, a part of the cell (:mod:`troupe.cell`): start, failure, and what follows.

A failure (a handler or ``on_start``/``on_restart`` raised, or ``fail`` from
outside) suspends the actor and asks its parent's ``on_child_failure`` — or,
with no supervising parent, the system's restart policy — what to do:
``resume``, ``restart`` (a fresh instance after a delay; ref and mailbox
survive), stop (see :mod:`troupe.stopping`).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable
from typing import Any

from .actor import Actor
from .cell_state import CellState
from .child import Child
from .metrics import ESCALATIONS
from .state import State

logger = logging.getLogger(__name__)

_DEFAULT_HOOK = Actor.on_child_failure


class Lifecycle(CellState):
    """Start, failure, resume and restart."""

    __slots__ = ()

    def start(self) -> None:
        """Run on_start (when the actor defines one), then begin handling messages."""
        if type(self.actor).on_start is Actor.on_start:
            self.state = State.RUNNING
            return
        self._run_lifecycle(self._start_sequence())

    async def _start_sequence(self) -> None:
        try:
            await self._call_hook("on_start")
        except Exception as exc:
            self._failed(exc, None, in_start="on_start")
            return
        self._enter_running()

    async def _call_hook(self, hook: str, *args: Any) -> None:
        result = self.actor._troupe_call_hook(hook, *args)
        if result is not None and isinstance(result, Awaitable):
            await result

    async def wait_started(self) -> None:
        """Wait until ``on_start`` (or a restart's ``on_restart``) has finished or failed."""
        lifecycle = self._lifecycle
        if lifecycle is not None and not lifecycle.done():
            await asyncio.wait({lifecycle})

    def _run_lifecycle(self, coro: Awaitable[None]) -> None:
        self._lifecycle = self._loop.create_task(coro)  # type: ignore[arg-type]

    def _enter_running(self) -> None:
        if self.state in (State.STOPPING, State.STOPPED):
            return
        self.state = State.RUNNING
        if not self._scheduled and (len(self.mailbox) or self.mailbox.system):
            self._schedule()

    def _failed(
        self,
        exc: BaseException,
        message: Any,
        *,
        in_start: str | None = None,
        answered: bool = False,
    ) -> None:
        """Suspend after ``exc`` (from a handler, or the lifecycle hook ``in_start``) and
        let the parent's ``on_child_failure`` (or the system's restart policy) decide.
        ``answered``: an ask's or a redelivered message's failure (see dispatch.answered)."""
        self.state = State.SUSPENDED
        self.failure = exc
        self.failed_in_start = in_start is not None
        self.failure_answered = answered
        self.failed_after_success = self._ran_well
        if not answered:  # an answered failure is neutral: the run neither grows nor ends
            self._ran_well = False
        self.system.note_failure(self, exc, message, hook=in_start)
        parent = self.parent
        if parent is not None and type(parent.actor).on_child_failure is not _DEFAULT_HOOK:
            parent.send_system(lambda: parent.actor.on_child_failure(Child.of(self.ref), exc))
            return
        self.system.apply_restart_policy(Child.of(self.ref), exc)

    def fail(self, exc: BaseException, *, escalated: bool = False) -> None:
        """Fail the actor from outside a handler (a linked actor died, a supervisor gave
        up): it is suspended and its supervisor decides, as after a handler exception.
        ``escalated`` counts it as an escalation. Does nothing while it is already
        suspended, stopping or stopped."""
        if self.state in (State.SUSPENDED, State.STOPPING, State.STOPPED):
            return
        if escalated and self.metrics is not None:
            self.metrics.add(ESCALATIONS)
        self._failed(exc, None)

    def resume(self) -> None:
        """Keep the instance and its state; continue with the next message."""
        if self.state is State.SUSPENDED:
            self.failure = None
            self._enter_running()

    def restart(self, delay: float = 0.0) -> None:
        """Replace the instance after ``delay`` seconds; mailbox and ref survive."""
        if self.state >= State.STOPPING:
            return
        self.state = State.SUSPENDED
        if self._timers is not None:
            self._timers.cancel_all()
        cause = self.failure or RuntimeError("restart requested")
        if self._backoff is not None:
            self._backoff.cancel()
            self._backoff = None
        if delay > 0:
            self._backoff = self.system.clock.call_later(delay, self._begin_restart, cause)
        else:
            self._begin_restart(cause)

    def _begin_restart(self, cause: BaseException) -> None:
        self._backoff = None
        if self.state >= State.STOPPING:
            return
        self._run_lifecycle(self._restart_sequence(cause))

    async def _restart_sequence(self, cause: BaseException) -> None:
        try:
            await self._call_hook("on_stop")
        except Exception:
            logger.exception("on_stop of %s failed during restart", self.name)
        self.actor._troupe_release()
        await self._stop_children(None)
        if self.state >= State.STOPPING:
            return
        self.restarts += 1
        try:
            self.actor = self._new_instance()
            self._bind(self.actor)
            await self._call_hook("on_restart", cause)
        except Exception as exc:
            self._failed(exc, None, in_start="on_restart")
            return
        self.failure = None
        self.system.note_restart(self)
        self._enter_running()
