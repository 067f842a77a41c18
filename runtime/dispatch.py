"""``Dispatch``, a part of the cell (:mod:`troupe.cell`): its queued messages in bounded turns.

No task or thread exists per idle actor. A cell is scheduled on the event
loop only when its mailbox turns non-empty, and then handles at most
``throughput`` messages, or fewer once the turn has run for
``throughput_deadline`` seconds (Akka's throughput-deadline-time), before
yielding (a sync actor over its time budget sits out one loop round before
its next turn, so a slow actor delays the others by one handler call, not
by a turn of them): sync handlers in the system's run queue (``_drain_sync``, run by
:mod:`troupe.run_queue`'s one loop callback), ``async def`` handlers in one task per
turn (``_drain_async``). The system lane runs
first. A sync handler that held the loop for ``slow_handler_warning`` seconds
is logged (:mod:`troupe.loop_lag`). An actor back to idle drops its empty
mailbox deques. Metrics are plain counters
(see :class:`troupe.metrics.ActorStats`). Also here: an ask to an idle sync
actor handled in the asker's task (``run_inline``) and the batching seam
``take_queued``.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from time import perf_counter
from typing import TYPE_CHECKING, Any

from .cell_state import CellState
from .delivery import Queued, TrackedReply
from .envelope import Envelope, open_envelope
from .errors import ActorStopped
from .mailbox import SPARE_LIMIT, SPARE_QUEUES
from .metrics import BUCKET0, FAILED, FAST_BOUND, SUM_NS
from .page_run import PageRun
from .state import State
from .tracing import TRACEPARENT, current_traceparent
from .tracing import enter as enter_trace
from .tracing import leave as leave_trace

if TYPE_CHECKING:
    from .envelope import Reply
    from .ref import ActorRef

logger = logging.getLogger(__name__)

_RUNNING = State.RUNNING
#: A turn's queue when the mailbox holds none (a turn for the system lane): empty for good.
_NO_MESSAGES: deque[Any] = deque(maxlen=0)


def answered(reply: object) -> bool:
    """Whether a failed message's failure is answered, so it counts toward no crash loop:
    an ask (the asker gets the exception) or a bridge's redelivery of a message that
    failed before (``DeliveryTracker.retry``). A tell and a fresh delivery count."""
    if reply is None:
        return False
    return not isinstance(reply, TrackedReply) or reply.retry


#: Asks handled inline in a row before one goes through the mailbox (and so the loop):
#: an asker looping over inline asks never awaits anything that yields.
INLINE_RUN = 64


class Dispatch(CellState):
    """Handling the queued messages in bounded turns."""

    __slots__ = ()

    def _schedule(self) -> None:
        self._scheduled = True
        if self._is_async:
            self._task = self._loop.create_task(self._drain_async())
        else:
            self._enqueue(self)  # the system's run queue (troupe.run_queue)

    def _finish_turn(self) -> None:
        self._scheduled = False
        self._current = None
        self._taken = None
        mailbox = self.mailbox
        if mailbox.system or (self.state is _RUNNING and mailbox.queue):
            self._schedule()
            return
        # Idle again: drop the empty deques (a deque keeps a block of 64 slots, ~0.6 KiB),
        # so an idle actor is back to its size before its first message (Mailbox.release).
        queue = mailbox.queue
        if queue is not None and not queue:
            mailbox.queue = None
            if len(SPARE_QUEUES) < SPARE_LIMIT:
                SPARE_QUEUES.append(queue)
        if mailbox.system is not None:
            mailbox.system = None
        if mailbox.waiters is not None and not mailbox.waiters:
            mailbox.waiters = None

    def _run_system_lane(self) -> None:
        lane = self.mailbox.system
        while lane:  # a non-empty lane is a deque
            action = lane.popleft()
            try:
                action()
            except Exception:
                logger.exception("system message for actor %s failed", self.name)

    def _drain_sync(self) -> None:
        # A turn handles at most ``throughput`` messages and ends early once it has run
        # for ``throughput_deadline`` seconds. The clock is read at the end of segments,
        # not per message: after the first message, then after as many as fit the time
        # left at the pace so far (all the rest for fast handlers): one slow handler ends
        # the turn after its own message, fast ones cost two reads per turn. A segment
        # that overran (a slow message after fast ones) makes the actor time each message
        # (``_each``) until a turn has no slow call (with metrics on: until a whole turn
        # fits the histogram's first bucket, as the buckets stay exact): then a handler that took
        # ``slow_handler_warning`` seconds is reported with its message type
        # (troupe.loop_lag), and not a segment that a busy machine (another thread
        # holding the GIL, the process not scheduled) stretched. Metrics
        # (troupe.metrics): a fast segment's calls all count in the first histogram
        # bucket; a slow one counts as one call that took it (exact for one message).
        mailbox = self.mailbox
        queue = mailbox.queue
        if (
            queue is not None
            and len(queue) == 1
            and type(queue[0]) is not Envelope
            and type(queue[0]) is not PageRun
            and not mailbox.system
            and not mailbox.waiters
            and self.state is _RUNNING
            and current_traceparent.get() is None
        ):
            # One bare message (a plain tell to an idle actor: ping-pong, fan-out): the turn
            # below reduced to what one message needs, with the same accounting.
            message = queue.popleft()
            began = perf_counter()
            try:
                self._receive(message)
            except Exception as exc:
                self._turn_failed(exc, message, None, began)
                if self.metrics is not None:
                    self.metrics.counts[SUM_NS] += int((perf_counter() - began) * 1e9)
                self._finish_turn()
                return
            spent = perf_counter() - began
            self._ran_well = True
            stats = self.metrics
            if stats is not None:
                counts = stats.counts
                if spent >= FAST_BOUND:
                    stats.observe(spent)
                else:
                    counts[BUCKET0] += 1
                counts[SUM_NS] += int(spent * 1e9)
            if spent >= self.system.slow_handlers.threshold:
                self.system.slow_handlers.held(self.name, self.actor, spent, message)
            if queue or mailbox.system is not None or mailbox.waiters is not None:
                self._finish_turn()
                return
            self._scheduled = False  # idle again: _finish_turn's common case, inlined
            mailbox.queue = None
            if len(SPARE_QUEUES) < SPARE_LIMIT:
                SPARE_QUEUES.append(queue)
            return
        if queue is None:
            queue = _NO_MESSAGES  # popleft raises IndexError: the turn ends
        receive = self._receive
        left = self._throughput
        stats = self.metrics
        system = self.system
        each = self._each
        hit = False  # a segment reached ``bound``
        bound = system.segment_bound  # segments this slow are observed or reported
        slow = 0  # calls already counted by observe()
        start = began = perf_counter()
        turn_end = start + self._deadline
        segment = 1
        ended = traced = False
        ok = False  # a message handled successfully this turn (see lifecycle._failed)
        if current_traceparent.get() is not None:
            leave_trace()  # inherited from whoever scheduled this turn
        while True:
            n = segment
            while n:
                if mailbox.system:
                    lane = perf_counter()
                    self._run_system_lane()
                    lane = perf_counter() - lane  # system messages are not handler time
                    start += lane
                    began += lane
                    turn_end += lane
                if self.state is not _RUNNING:
                    ended = True
                    break
                try:
                    item = queue.popleft()
                except IndexError:  # none left (cheaper than testing ``queue`` per message)
                    ended = True
                    break
                if mailbox.waiters:
                    mailbox.admit_waiter()
                n -= 1
                kind = type(item)
                if kind is not Envelope and kind is not PageRun:  # a bare message (a tell)
                    message = item  # named if its segment turns out slow
                    try:
                        receive(item)
                        ok = True
                        continue
                    except Exception as exc:
                        error = exc
                        reply: Reply | None = None
                elif kind is PageRun:
                    # a page's next message (troupe.page_run): its tracker is told directly,
                    # as an envelope's PageSlot would tell it
                    index = item.next
                    item.index = index
                    item.next = index + 1
                    message = item.messages[index]
                    self._current = item
                    headers = item.page_headers[index]
                    if headers is not None and TRACEPARENT in headers:
                        traced = enter_trace(headers)
                    tracker = item.tracker
                    try:
                        tracker.started(index)
                    except Exception as exc:
                        logger.exception("page tracker of a message to %s failed", self.name)
                        tracker.finished(index, exc)
                        self._current = None
                        if traced:
                            leave_trace()
                            traced = False
                        continue
                    try:
                        receive(message)
                    except Exception as exc:
                        error = exc
                        reply = item.reply  # the slot the failure settles
                        item.slot = None
                    else:
                        ok = True
                        slot = item.slot
                        if slot is None:
                            tracker.finished(index, None)
                        else:  # the handler took its message (take_current): settled once
                            item.slot = None
                            if not slot.done():
                                slot.set_result(None)
                        self._current = None
                        if traced:
                            leave_trace()
                            traced = False
                        continue
                else:
                    self._current = item
                    message = item.message
                    reply = item.reply
                    headers = item.headers
                    if headers is not None and TRACEPARENT in headers:
                        traced = enter_trace(headers)
                    if isinstance(reply, TrackedReply) and not reply.start(self.name):
                        self._current = None
                        if traced:
                            leave_trace()
                            traced = False
                        continue
                    try:
                        result = receive(message)
                    except Exception as exc:
                        error = exc
                    else:
                        ok = True
                        if reply is not None and not reply.done():
                            reply.set_result(result)
                        self._current = None  # a bare message after it has none
                        if traced:
                            leave_trace()
                            traced = False
                        continue
                # the handler raised ``error``: the turn ends here
                if stats is not None:
                    slow += 1
                if ok:
                    self._ran_well = True
                    ok = False
                self._turn_failed(error, message, reply, began, first=segment - n == 1)
                del error  # no cycle through its traceback and this frame
                if traced:
                    leave_trace()
                ended = True
                began = perf_counter()  # the failure is observed: not its logging too
                break
            done = segment - n
            left -= done
            now = perf_counter()
            if now - began >= bound and done:
                spent = now - began
                hit = True
                if stats is not None and spent >= FAST_BOUND:
                    stats.observe(spent)  # exact for one call; else one call took it all
                    slow += 1
                if done > 1:
                    each = self._each = True  # time each call from now on
                elif spent >= system.slow_handlers.threshold:
                    system.slow_handlers.held(self.name, self.actor, spent, message)
            began = now
            if ended or not left or now >= turn_end or not (queue or mailbox.system):
                break
            if each:
                segment = 1
                continue
            segment = left  # the rest, or as many as fit the time left at this turn's pace
            handled = self._throughput - left
            if (now - start) * left > (turn_end - now) * handled:
                segment = max(1, int((turn_end - now) * handled / (now - start)))
        if ok:
            self._ran_well = True
        if each and not hit and (stats is None or began - start < FAST_BOUND):
            self._each = False  # (with metrics: once a whole turn fits the first bucket)
        if stats is not None:  # ActorStats.end_turn, inlined
            counts = stats.counts
            quick = self._throughput - left - slow
            if quick > 0:  # calls skipped by their tracker count as neither
                counts[BUCKET0] += quick
            counts[SUM_NS] += int((began - start) * 1e9)
        if began >= turn_end and self.state is _RUNNING and queue and not mailbox.system:
            # Over its time budget with more to do: it sits out one loop round, so what
            # became ready meanwhile (an asker woken by a reply) runs before its next turn.
            self._current = None
            self._taken = None
            self._loop.call_soon(self._enqueue, self)
            return
        self._finish_turn()

    def _turn_failed(
        self,
        exc: Exception,
        message: Any,
        reply: Any,
        began: float,
        *,
        first: bool = True,
    ) -> None:
        """A sync handler raised ``exc``: observe the call (and report it as slow when it
        was the segment's ``first`` and held the loop), fail the asker and what the handler
        took, then the actor (``_failed``: the failure model's one path)."""
        system = self.system
        spent = perf_counter() - began
        if first and spent >= system.slow_handlers.threshold:
            system.slow_handlers.held(self.name, self.actor, spent, message)
        stats = self.metrics
        if stats is not None:
            stats.observe(spent)
            stats.add(FAILED)
        if reply is not None and not reply.done():
            reply.set_exception(exc)
        if self._taken is not None:
            self._settle_taken(exc)
        self._failed(exc, message, answered=answered(reply))

    async def _drain_async(self) -> None:
        # As _drain_sync, with the clock read after each message (an await costs more):
        # the turn ends after ``throughput`` messages or ``throughput_deadline`` seconds.
        # The time includes what the handlers awaited, so no slow-handler warning here
        # (the loop-lag monitor sees an async handler that blocks).
        mailbox = self.mailbox
        receive = self._receive
        budget = self._throughput
        stats = self.metrics
        slow = 0
        began = start = perf_counter()
        turn_end = start + self._deadline
        traced = False
        ok = False
        if current_traceparent.get() is not None:
            leave_trace()
        while budget:
            if mailbox.system:
                lane = perf_counter()
                self._run_system_lane()
                lane = perf_counter() - lane  # system messages are not handler time
                start += lane
                began += lane
                turn_end += lane
            if self.state is not _RUNNING or not mailbox.queue:
                break
            item = mailbox.pop()
            budget -= 1
            message, reply = open_envelope(item)
            if type(item) is Envelope:
                self._current = item
                headers = item.headers
                if headers is not None and TRACEPARENT in headers:
                    traced = enter_trace(headers)
                if isinstance(reply, TrackedReply) and not reply.start(self.name):
                    if traced:
                        leave_trace()
                        traced = False
                    continue
            else:
                self._current = None
            try:
                result = await receive(message)
            except asyncio.CancelledError:
                if reply is not None and not reply.done():
                    reply.set_exception(ActorStopped(self.name))
                if self._taken is not None:
                    self._settle_taken(ActorStopped(self.name))
                self._scheduled = False
                self._task = None
                if stats is not None:  # the cancelled message is not counted
                    stats.end_turn(self._throughput - budget - 1, slow, began - start)
                raise
            except Exception as exc:
                if stats is not None:
                    now = perf_counter()
                    stats.observe(now - began)
                    stats.add(FAILED)
                    slow += 1
                    began = now
                if reply is not None and not reply.done():
                    reply.set_exception(exc)
                if self._taken is not None:
                    self._settle_taken(exc)
                if ok:
                    self._ran_well = True
                    ok = False
                self._failed(exc, message, answered=answered(reply))
                if traced:
                    leave_trace()
                break
            now = perf_counter()
            if stats is not None and now - began >= FAST_BOUND:
                stats.observe(now - began)
                slow += 1
            began = now
            ok = True
            if reply is not None and not reply.done():
                reply.set_result(result)
            self._current = None
            if traced:
                leave_trace()
                traced = False
            if now >= turn_end:
                break
        if ok:
            self._ran_well = True
        if stats is not None:
            stats.end_turn(self._throughput - budget, slow, began - start)
        self._task = None
        self._finish_turn()

    def run_inline(
        self,
        message: Any,
        reply: asyncio.Future[Any],
        headers: dict[str, str] | None,
        sender: ActorRef | None = None,
    ) -> None:
        """Handle an ask now, in the asker's task: the actor is running, idle (nothing queued,
        no turn scheduled) and sync, on this loop (``ActorRef.ask`` checked). The same as a
        turn of one message: the actor is busy meanwhile (what arrives is queued and runs
        in its next turn), the handler sees the message's headers, sender and trace, its
        time is counted and reported like a turn's, and an exception fails the message and
        the actor through ``_failed`` (the failure model's one path)."""
        system = self.system
        self._scheduled = True  # busy: a tell meanwhile queues, an ask meanwhile waits
        self._current = Envelope(message, reply, sender, headers)
        outer = current_traceparent.get()
        traced = False
        if headers is not None:
            traced = enter_trace(headers)
        if not traced and outer is not None:
            leave_trace()  # as a turn: the handler runs in the message's trace only
        stats = self.metrics
        began = perf_counter()
        try:
            result = self._receive(message)
        except Exception as exc:
            self._turn_failed(exc, message, reply, began)
            if stats is not None:
                stats.counts[SUM_NS] += int((perf_counter() - began) * 1e9)
            current_traceparent.set(outer)
            self._finish_turn()
            return
        except BaseException as exc:  # not a handler failure (e.g. KeyboardInterrupt): passed on
            if not reply.done():
                reply.set_exception(ActorStopped(self.name))
            current_traceparent.set(outer)
            self._finish_turn()
            raise exc
        spent = perf_counter() - began
        self._ran_well = True
        if stats is not None:
            counts = stats.counts
            if spent >= FAST_BOUND:
                stats.observe(spent)
            else:
                counts[BUCKET0] += 1
            counts[SUM_NS] += int(spent * 1e9)
        if spent >= system.segment_bound:
            if spent >= system.slow_handlers.threshold:
                system.slow_handlers.held(self.name, self.actor, spent, message)
            system.inline_left = 0  # a slow handler: the next ask goes through the loop
        if not reply.done():
            reply.set_result(result)
        if traced or outer is not None:
            current_traceparent.set(outer)
        self._finish_turn()

    def take_queued(self, limit: int) -> list[Queued]:
        """Remove up to ``limit`` user messages queued behind the current one."""
        mailbox = self.mailbox
        taken: list[Queued] = []
        stats = self.metrics
        while len(taken) < limit and len(mailbox):
            item = mailbox.pop()
            if type(item) is Envelope:
                reply = item.reply
                if isinstance(reply, TrackedReply) and not reply.start(self.name):
                    continue
                taken.append(Queued(item.message, item.headers or {}, reply, stats))
            else:
                taken.append(Queued(item, {}, None, stats))
        if taken:
            if self._taken is None:
                self._taken = taken[:]
            else:
                self._taken.extend(taken)
        return taken

    def _settle_taken(self, exc: BaseException) -> None:
        """Reject what the failed handler took with ``take_queued`` and left unsettled."""
        taken, self._taken = self._taken, None
        for queued in taken or ():
            queued.reject(exc)
