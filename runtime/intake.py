"""``Intake``, a part of the cell (:mod:`troupe.cell`): how messages enter its mailbox.

``ActorRef.tell``/``ask`` inline the common case; these are the general
paths (another thread, a full mailbox, a stopped actor) and the handlers of
messages the mailbox policy drops or that can no longer be delivered.
"""

from __future__ import annotations

import asyncio
import threading
from asyncio import _get_running_loop
from collections import deque
from collections.abc import Callable
from itertools import repeat
from threading import get_ident
from typing import Any

from .cell_state import CellState
from .dead_letters import MAILBOX_FULL, RECIPIENT_STOPPED, SYSTEM_CLOSED
from .envelope import open_envelope
from .errors import ActorStopped, MessageDropped
from .mailbox import ACCEPTED, SPARE_QUEUES, Accepted
from .metrics import DEAD_LETTERED
from .page_run import PageRun
from .ref import LOOP_STOPPED, NO_LOOP, outside_loop
from .state import State
from .thread_intake import ThreadWaiter, put_on_loop

_RUNNING = State.RUNNING
_STOPPING = State.STOPPING


class Intake(CellState):
    """How messages enter the mailbox: the general paths, and messages that cannot be delivered."""

    __slots__ = ()

    def deliver(self, item: Any) -> Accepted | asyncio.Future[None]:
        """Put a user message (bare or in an Envelope) in the mailbox.

        ``ActorRef.tell`` inlines the common case (loop thread, running actor,
        room in the queue); this is the general path. Raises ``MailboxFull``
        when the policy refuses the message, and RuntimeError on the system's
        thread while its loop is not running (nothing would ever handle it).
        """
        if get_ident() != self._thread_id:
            return self._deliver_from_thread(item)
        if self.state >= _STOPPING:
            self._undeliverable(item, RECIPIENT_STOPPED)
            return ACCEPTED
        if _get_running_loop() is None:
            raise outside_loop(self.name, "tell", NO_LOOP)
        pending = self.mailbox.put(item, self.name)
        if self.state is _RUNNING and not self._scheduled:
            self._schedule()
        return pending

    def deliver_page(self, run: PageRun) -> None:
        """Put a page (``ActorRef.deliver_page``) in the mailbox: one room check and one
        scheduling when the actor runs and the page fits, its messages queued as entries
        of one :class:`~troupe.page_run.PageRun`; otherwise one envelope at a time through
        ``deliver``, a message the policy refuses settling its own reply slot with the
        error (it never ran). Loop thread only."""
        mailbox = self.mailbox
        queue = mailbox.queue
        size = len(run.messages)
        if (
            self.state is _RUNNING
            and not mailbox.waiters
            and (len(queue) if queue is not None else 0) + size <= mailbox.capacity
            and _get_running_loop() is self._loop
        ):
            if queue is None:
                queue = mailbox.queue = SPARE_QUEUES.pop() if SPARE_QUEUES else deque()
            queue.extend(repeat(run, size))
            if not self._scheduled:
                self._schedule()
            return
        envelopes = [run.envelope() for _ in range(size)]
        for envelope in envelopes:
            try:
                self.deliver(envelope)
            except Exception as exc:  # refused (MailboxFull, no loop): it never ran
                reply = envelope.reply
                if reply is not None and not reply.done():
                    reply.set_exception(exc)

    def _deliver_from_thread(self, item: Any) -> Accepted:
        """Hand a message over from a foreign thread; block while backpressure parks it.

        The message goes through the system's thread intake (troupe.thread_intake):
        one deque drained by one loop callback, the calling thread waiting on a lock.
        Raises ``MailboxFull`` in the calling thread when the policy refuses it,
        and RuntimeError when the system's loop is not running.
        """
        loop = self._loop
        if loop.is_closed():
            self._undeliverable(item, SYSTEM_CLOSED)
            return ACCEPTED
        if not loop.is_running():
            raise outside_loop(self.name, "tell", LOOP_STOPPED)
        waiter = ThreadWaiter()
        try:
            self.system.thread_intake.submit(put_on_loop, self.ref, item, waiter)
        except RuntimeError:  # closed meanwhile
            self._undeliverable(item, SYSTEM_CLOSED)
            return ACCEPTED
        waiter.wait(loop, lambda: self._undeliverable(item, SYSTEM_CLOSED))
        return ACCEPTED

    def send_system(self, action: Callable[[], Any]) -> None:
        """Queue ``action`` in the system lane, ahead of every user message."""
        if threading.get_ident() != self._thread_id:
            self._loop.call_soon_threadsafe(self.send_system, action)
            return
        if self.state is State.STOPPED:
            return
        self.mailbox.put_system(action)
        if not self._scheduled and self.state is not State.STARTING:
            self._schedule()

    def _overflowed(self, item: Any, reason: str) -> None:
        message, reply = open_envelope(item)
        if reply is not None and not reply.done():
            policy = self.mailbox.policy.value
            reply.set_exception(MessageDropped(self.name, policy))
        if reason == "dead_letter":
            if self.metrics is not None:
                self.metrics.add(DEAD_LETTERED)
            self.system.dead_letters.publish(message, self.name, MAILBOX_FULL)
        else:
            self.system.note_dropped(self, message)

    def _undeliverable(self, item: Any, reason: str) -> None:
        message, reply = open_envelope(item)
        if reply is not None and not reply.done():
            reply.set_exception(ActorStopped(self.name))
        if self.metrics is not None:
            self.metrics.add(DEAD_LETTERED)
        self.system.dead_letters.publish(message, self.name, reason)
