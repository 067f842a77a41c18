"""``ActorRef``: the only handle the outside world has on an actor."""

from __future__ import annotations

import asyncio
from asyncio import _get_running_loop
from collections import deque
from threading import get_ident
from typing import TYPE_CHECKING, Any

from .actor import SYSTEM_ASK_TIMEOUT
from .delivery import TrackedReply
from .dispatch import INLINE_RUN
from .envelope import Envelope
from .errors import check_timeout
from .mailbox import SPARE_QUEUES, Accepted
from .message_types import message_type_of
from .page_run import PageRun
from .state import State
from .tracing import PROPAGATION, current_traceparent, outgoing

if TYPE_CHECKING:
    from collections.abc import Sequence

    from .cell import ActorCell
    from .delivery import DeliveryTracker, PageTracker

#: The default of ``ask(timeout=)``: use the system's ``ask_timeout``.
SYSTEM_TIMEOUT: Any = object()
_RUNNING = State.RUNNING
_STOPPED = State.STOPPED


#: Why ``outside_loop`` was raised.
NO_LOOP = "no event loop is running in this thread"
OTHER_LOOP = "this is not the actor system's event loop"
LOOP_STOPPED = "the actor system's event loop is not running"


def outside_loop(actor: str, call: str, why: str) -> RuntimeError:
    """The error for ``tell``/``ask`` called where the system's loop does not run."""
    return RuntimeError(
        f"ref.{call}() to actor {actor!r} needs the actor system's running event loop, "
        f"but {why}; from sync code or another thread use "
        f"SyncActorSystem.{call}(ref, message)"
    )


class ActorRef:
    """Send messages to an actor with ``tell`` (one-way) or ``ask`` (request/reply).

    A ref stays valid across restarts; once the actor stops, messages sent to it
    go to the system's dead letters. Refs are safe to use from other threads.
    """

    __slots__ = ("_cell",)

    def __init__(self, cell: ActorCell) -> None:
        self._cell = cell

    @property
    def name(self) -> str:
        """The actor's unique name in its system."""
        return self._cell.name

    @property
    def is_alive(self) -> bool:
        """False once the actor has stopped."""
        return self._cell.state is not _STOPPED  # is_terminated, read at once: a hot path

    def tell(
        self,
        message: Any,
        sender: ActorRef | None = None,
        headers: dict[str, str] | None = None,
    ) -> Accepted | asyncio.Future[None]:
        """Send ``message`` one-way.

        Returns an awaitable: ``await ref.tell(m)`` waits for mailbox room when
        the mailbox policy is ``backpressure``; otherwise it is already done.
        Pass ``sender`` and ``headers`` by keyword (they are not keyword-only only
        because a call to a function with keyword-only parameters is not specialized
        by CPython 3.11: ~20 ns more per tell).
        A ``backpressure`` mailbox parks at most ``max_parked`` messages beyond
        its capacity; past that ``tell`` raises :class:`~troupe.MailboxFull`.
        From a thread other than the system's (while its loop runs), a full
        ``backpressure`` mailbox blocks the calling thread instead. Called on
        the system's thread while its loop is not running, it raises
        RuntimeError (sync programs use ``SyncActorSystem.tell``).
        """
        cell = self._cell
        if PROPAGATION.on and (current_traceparent.get() is not None or cell.system.tracing):
            headers = outgoing(headers, cell.system.tracing)  # carry the trace (troupe.tracing)
        if sender is not None or headers is not None:
            message = Envelope(message, None, sender, headers)
        # On the loop thread (get_ident: _get_running_loop() makes a getpid() system call).
        if cell.state is _RUNNING and get_ident() == cell._thread_id:
            mailbox = cell.mailbox
            queue = mailbox.queue
            if queue is None:  # an idle actor holds no deque (see Mailbox)
                if not cell._scheduled and cell._loop.is_running():
                    queue = mailbox.queue = SPARE_QUEUES.pop() if SPARE_QUEUES else deque()
                    queue.append(message)
                    if cell._is_async:
                        cell._schedule()
                    else:  # ActorCell._schedule, inlined
                        cell._scheduled = True
                        cell._enqueue(cell)
                    return cell.system.accepted
            elif len(queue) < mailbox.capacity and not mailbox.waiters and cell._scheduled:
                # the hot path of ActorCell.deliver, inlined: a turn is pending (queued while
                # the loop ran; a message added while the loop is paused joins that turn)
                queue.append(message)
                return cell.system.accepted
        return cell.deliver(message)

    @property
    def default_ask_timeout(self) -> float | None:
        """What ``ask`` waits when given no ``timeout``: the actor's ``ask_timeout`` if it
        sets one, else the system's."""
        cell = self._cell
        own: float | None = cell.actor.ask_timeout
        if own is SYSTEM_ASK_TIMEOUT:
            return cell.system.ask_timeout
        return own

    def ask(
        self,
        message: Any,
        *,
        timeout: float | None = SYSTEM_TIMEOUT,
        headers: dict[str, str] | None = None,
        sender: ActorRef | None = None,
    ) -> asyncio.Future[Any]:
        """Send ``message``; awaiting the result gives the handler's result (or raises its
        exception).

        ``timeout`` (seconds) defaults to the actor's ``ask_timeout`` when it sets
        one, else the system's ``ask_timeout``; ``None`` waits forever. It covers
        the whole ask, the wait for room in a full ``backpressure`` mailbox
        included: :class:`~troupe.AskTimeout` names the actor, and a message still
        parked at the deadline is never handled. ``sender`` is what the handler sees
        as ``self.sender``.
        Call it on the system's event loop; sync code uses ``SyncActorSystem.ask``.
        """
        cell = self._cell
        if timeout is SYSTEM_TIMEOUT:
            own: float | None = cell.actor.ask_timeout
            timeout = cell.system.ask_timeout if own is SYSTEM_ASK_TIMEOUT else own
        elif timeout is not None:
            timeout = check_timeout("timeout", timeout)
        loop = cell._loop
        if get_ident() != cell._thread_id or not loop.is_running():  # (as tell: no getpid())
            running = _get_running_loop()
            if running is not loop:
                why = NO_LOOP if running is None else OTHER_LOOP
                raise outside_loop(self.name, "ask", why)
        reply: asyncio.Future[Any] = loop.create_future()
        if PROPAGATION.on and (current_traceparent.get() is not None or cell.system.tracing):
            headers = outgoing(headers, cell.system.tracing)
        if cell.system.ask_hooks:  # middleware with before_ask/after_ask (troupe.middleware)
            headers = cell.system.middleware.ask_started(self, message, headers, reply)
        elif (
            cell.state is _RUNNING
            and not cell._scheduled
            and not cell._is_async
            and not cell.mailbox.queue
            and not cell.mailbox.system
        ):
            system = cell.system
            if system.inline_left and system.inline_asks:
                # idle, sync, on this loop: handled now in the asker's task (no deadline
                # to arm: the reply is set before ask returns); see dispatch.run_inline
                system.inline_left -= 1
                cell.run_inline(message, reply, headers, sender)
                return reply
            system.inline_left = INLINE_RUN  # this one goes through the loop
        if timeout is not None:  # armed first: it covers a wait for mailbox room too
            cell.system.ask_deadlines.add(reply, cell.name, timeout)
        try:
            cell.deliver(Envelope(message, reply, sender, headers))
        except BaseException:
            reply.cancel()  # refused (MailboxFull): no deadline fires for it
            raise
        return reply

    def deliver(
        self,
        message: Any,
        tracker: DeliveryTracker,
        *,
        headers: dict[str, str] | None = None,
        sender: ActorRef | None = None,
    ) -> Accepted | asyncio.Future[None]:
        """Send ``message`` one-way and report its outcome to ``tracker``.

        ``tracker.started()`` runs immediately before the handler is invoked;
        ``tracker.finished(error)`` runs once: ``None`` after the handler
        returned, its exception when it raised, or why the message never reached
        a handler (``ActorStopped``, ``MessageDropped``, ...). The awaitable is
        ``tell``'s; ``sender`` is what the handler sees as ``self.sender``. Loop thread
        only (bridges are actors).
        """
        cell = self._cell
        if get_ident() != cell._thread_id:
            raise RuntimeError(
                f"deliver({self.name!r}) must be called on the actor system's loop thread"
            )
        if PROPAGATION.on and (current_traceparent.get() is not None or cell.system.tracing):
            headers = outgoing(headers, cell.system.tracing)
        return cell.deliver(Envelope(message, TrackedReply(tracker), sender, headers))

    def deliver_page(
        self,
        items: Sequence[tuple[Any, dict[str, str] | None]],
        tracker: PageTracker,
        senders: Sequence[ActorRef | None] | None = None,
    ) -> None:
        """Send a page of ``(message, headers)`` one-way in one call; report each
        message's outcome to ``tracker`` by its index in ``items``.

        What :meth:`deliver` does per message, with one room check and one
        scheduling of the actor for the whole page: each message is still handled
        on its own and in order, ``tracker.started(i)`` runs right before its
        handler and ``tracker.finished(i, error)`` once after it (or with why it
        never ran: a stopped actor, a mailbox policy that refused it). A handler
        failure fails that message only; the messages behind it stay queued for
        the restarted (or resumed) actor. When the page does not fit the mailbox
        it is put in one message at a time: ``backpressure`` parks up to
        ``max_parked``, and a message the policy refuses finishes unstarted with why.
        An actor that defines ``receive_batch`` gets the page in one call.
        ``senders``: each message's ``self.sender`` (as ``deliver(sender=)``), in order.
        Loop thread only (bridges are actors).
        """
        cell = self._cell
        if get_ident() != cell._thread_id:
            raise RuntimeError(
                f"deliver_page({self.name!r}) must be called on the actor system's loop thread"
            )
        messages = [message for message, _ in items]
        if PROPAGATION.on and (current_traceparent.get() is not None or cell.system.tracing):
            tracing = cell.system.tracing
            page_headers = [outgoing(headers, tracing) for _, headers in items]
        else:
            page_headers = [headers for _, headers in items]
        if senders is not None and len(senders) != len(messages):
            raise ValueError(f"deliver_page: {len(senders)} senders for {len(messages)} messages")
        cell.deliver_page(PageRun(tracker, messages, page_headers, senders))

    @property
    def mailbox_capacity(self) -> int:
        """How many user messages the actor's mailbox holds."""
        return self._cell.mailbox.capacity

    @property
    def mailbox_room(self) -> int:
        """Capacity minus queued minus parked messages; 0 once the actor is stopping."""
        return self._cell.mailbox_room()

    def stop(self) -> asyncio.Future[None]:
        """Stop the actor after its current message; the future resolves once it stopped."""
        return self._cell.request_stop()

    @property
    def message_type(self) -> type | None:
        """The message type the actor declares (see :mod:`troupe.message_types`), or None."""
        return message_type_of(type(self._cell.actor))

    def __repr__(self) -> str:
        return f"<ActorRef {self._cell.name}>"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, ActorRef) and other._cell is self._cell

    def __hash__(self) -> int:
        return id(self._cell)
