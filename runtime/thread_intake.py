"""Messages from other threads: one intake queue per system, drained by one loop callback.

A ``tell`` from a foreign thread or a ``SyncActorSystem.ask`` does not start
a coroutine and a task per call: the calling thread appends the work to a
deque and, unless a drain is already scheduled, wakes the loop once
(``call_soon_threadsafe``). The loop runs every queued item in one callback.
Replies come back through a :class:`ThreadWaiter`, a reply slot backed by a
plain lock the calling thread blocks on: no future, no event-loop round trip.
The waiters a batch settled are woken in turn, not all at once: the loop wakes
the first, and each woken thread wakes the next (a baton), so one thread at a
time wants the GIL instead of every asker at once (8 threads asking one actor:
~1.2x to ~1.7-2x pykka's rate). A thread whose wait was cut short (a timeout,
an interrupt) breaks the chain for the ones after it only until their next
check, ``POLL`` seconds at most: a waiter found settled there takes its reply.
Timeouts and errors are those of ``ref.ask``: the handler's exception,
``AskTimeout``, ``MailboxFull`` or ``ActorStopped`` is raised in the calling
thread. On a real-time system the waiting thread times the ask out itself (a
message still parked then is never handled, a late reply is ignored); with
another clock (a VirtualClock) the loop arms the deadline on that clock.
"""

from __future__ import annotations

import asyncio
import logging
import time
from _thread import allocate_lock
from collections import deque
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from .envelope import Envelope
from .errors import AskTimeout, MailboxFull, SystemClosed
from .state import State
from .tracing import PROPAGATION, current_traceparent, outgoing

if TYPE_CHECKING:
    from .cell import ActorCell
    from .ref import ActorRef

logger = logging.getLogger(__name__)

#: Seconds between checks, while a thread waits, that the system's loop still exists.
POLL = 0.5
_RUNNING = State.RUNNING


class ThreadWaiter:
    """The reply slot of a message sent from another thread; that thread blocks in
    :meth:`wait` until the loop settles it.

    It offers the Future methods the runtime calls on reply slots (``done``,
    ``cancelled``, ``set_result``, ``set_exception``, ``add_done_callback``),
    so every path that settles an ask settles it the same way. Settled on the
    loop's thread only; the first outcome wins.
    """

    __slots__ = ("_callbacks", "_done", "_intake", "_lock", "_next", "error", "result", "taken")

    def __init__(self) -> None:
        self._lock = allocate_lock()
        self._lock.acquire()
        self._done = False
        self._callbacks: list[Callable[[ThreadWaiter], Any]] | None = None
        self.result: Any = None
        self.error: BaseException | None = None
        self.taken = False  # the loop has picked the message up
        self._intake: ThreadIntake | None = None  # whose batch wakes this waiter
        self._next: ThreadWaiter | None = None  # the waiter this one's thread wakes

    def done(self) -> bool:
        return self._done

    def cancelled(self) -> bool:
        return False

    def set_result(self, result: Any) -> None:
        if not self._done:
            self.result = result
            self._done = True
            self._wake()
            if self._callbacks is not None:
                self._run_callbacks()

    def set_exception(self, error: BaseException) -> None:
        if not self._done:
            self.error = error
            self._done = True
            self._wake()
            if self._callbacks is not None:
                self._run_callbacks()

    def _wake(self) -> None:
        intake = self._intake
        if intake is not None and intake._settled is not None:
            intake._settled.append(self)  # woken in turn at the end of the batch
        else:
            self._lock.release()

    def _pass_on(self) -> None:
        """Wake the next waiter of this one's batch (in the thread that waited)."""
        following = self._next
        if following is not None:
            self._next = None
            following._lock.release()

    def add_done_callback(self, callback: Callable[[ThreadWaiter], Any]) -> None:
        if self._done:
            callback(self)
        elif self._callbacks is None:
            self._callbacks = [callback]
        else:
            self._callbacks.append(callback)

    def _run_callbacks(self) -> None:
        callbacks, self._callbacks = self._callbacks, None
        for callback in callbacks or ():
            try:
                callback(self)
            except Exception:
                logger.exception("callback of a thread's reply failed")

    def wait(
        self,
        loop: asyncio.AbstractEventLoop,
        on_closed: Callable[[], Any],
        timeout: float | None = None,
        actor: str = "",
    ) -> Any:
        """Block until settled; return the result or raise the error. Past ``timeout``
        seconds, give up with ``AskTimeout(actor, timeout)`` (a late outcome is ignored;
        a message still parked is never handled). If the loop is closed before it took
        the message, return ``on_closed()``."""
        lock = self._lock
        if lock.acquire(timeout=POLL if timeout is None or timeout > POLL else timeout):
            self._pass_on()
            error = self.error  # the common case: settled within the first wait
            if error is not None:
                self.error = None  # no cycle through the traceback
                raise error
            return self.result
        # The first wait took min(POLL, timeout): with timeout <= POLL the deadline has
        # passed (the loop below times out at once), else it is POLL seconds ago + timeout.
        deadline = None if timeout is None else time.monotonic() - POLL + timeout
        while True:
            wait = POLL if deadline is None else min(POLL, deadline - time.monotonic())
            if wait > 0 and lock.acquire(timeout=wait):
                break
            if self._done:  # settled, but the waiter before it in the batch did not wake it
                break
            if deadline is not None and time.monotonic() >= deadline:
                if not self._done:
                    self._done = True  # the loop ignores what comes later
                    raise AskTimeout(actor, timeout)  # type: ignore[arg-type]
                break  # settled just now
            if loop.is_closed() and not self._done:
                if not self.taken:
                    return on_closed()
                raise SystemClosed("the actor system's loop closed before it replied")
        self._pass_on()
        error = self.error
        if error is not None:
            self.error = None  # no cycle through the traceback
            raise error
        return self.result


class ThreadIntake:
    """Work handed to the loop by other threads, run by one loop callback per batch.

    Actors that the batch's asks made ready run their turn at the end of that
    callback (``run_soon``), not one loop iteration later.
    """

    __slots__ = ("_items", "_loop", "_ready", "_scheduled", "_settled")

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        self._items: deque[tuple[Callable[..., Any], tuple[Any, ...]]] = deque()
        self._ready: list[ActorCell] = []
        self._scheduled = False
        self._settled: list[ThreadWaiter] | None = None  # while a batch runs

    def submit(self, fn: Callable[..., Any], *args: Any) -> None:
        """Run ``fn(intake, *args)`` on the loop soon (any thread). Raises RuntimeError when the
        loop is closed."""
        self._items.append((fn, args))
        if not self._scheduled:
            self._scheduled = True
            try:
                self._loop.call_soon_threadsafe(self._drain)
            except RuntimeError:
                self._scheduled = False
                raise

    def run_soon(self, cell: ActorCell) -> None:
        """Schedule ``cell``'s turn at the end of this batch (loop thread, in a batch)."""
        cell._scheduled = True
        self._ready.append(cell)

    def _drain(self) -> None:
        self._scheduled = False  # first: an item added from now on schedules another drain
        settled: list[ThreadWaiter] = []
        self._settled = settled
        try:
            self._run_batch()
        finally:
            self._settled = None
            if settled:  # a chain: each woken thread wakes the next one
                for at in range(len(settled) - 1):
                    settled[at]._next = settled[at + 1]
                settled[0]._lock.release()

    def _run_batch(self) -> None:
        items = self._items
        while items:
            fn, args = items.popleft()
            try:
                fn(self, *args)
            except Exception:
                logger.exception("work from another thread failed on the loop")
        ready = self._ready
        if ready:
            self._ready = []
            for cell in ready:
                if cell._is_async:
                    cell._scheduled = False
                    cell._schedule()
                else:
                    cell._drain_sync()


def trace_headers(ref: ActorRef) -> dict[str, str] | None:
    """The trace headers a message from this thread carries (see troupe.tracing)."""
    system = ref._cell.system
    if PROPAGATION.on and (current_traceparent.get() is not None or system.tracing):
        return outgoing(None, system.tracing)
    return None


def ask_on_loop(
    intake: ThreadIntake,
    ref: ActorRef,
    message: Any,
    timeout: float | None,
    headers: dict[str, str] | None,
    waiter: ThreadWaiter,
) -> None:
    """``ref.ask`` on the loop with ``waiter`` as the reply slot. ``timeout`` (checked)
    is armed on the system's clock; None when the asking thread times out itself."""
    waiter.taken = True
    if waiter._done:  # the asking thread gave up already
        return
    waiter._intake = intake
    cell = ref._cell
    if timeout is not None:
        cell.system.ask_deadlines.add(waiter, cell.name, timeout)  # type: ignore[arg-type]
    envelope = Envelope(message, waiter, None, headers)  # type: ignore[arg-type]
    try:
        if cell.state is _RUNNING:  # the common case of ActorCell.deliver, inlined
            mailbox = cell.mailbox
            queue = mailbox.queue
            if queue is not None and len(queue) < mailbox.capacity and not mailbox.waiters:
                queue.append(envelope)
            else:
                mailbox.put(envelope, cell.name)
            if not cell._scheduled:
                cell._scheduled = True
                intake._ready.append(cell)  # its turn runs at the end of this batch
        else:
            cell.deliver(envelope)
    except MailboxFull as exc:
        waiter.set_exception(exc)
    except BaseException as exc:
        waiter.set_exception(exc)
        raise


def put_on_loop(intake: ThreadIntake, ref: ActorRef, item: Any, waiter: ThreadWaiter) -> None:
    """``deliver`` on the loop; ``waiter`` is settled once the message is in the mailbox
    (at once, or when a parked ``backpressure`` message is admitted), or with the error."""
    waiter.taken = True
    try:
        pending = ref._cell.deliver(item)
    except BaseException as exc:
        waiter.set_exception(exc)
        return
    if isinstance(pending, asyncio.Future):  # parked: in once admitted
        pending.add_done_callback(lambda _: waiter.set_result(None))
    else:
        waiter.set_result(None)
