"""Dispatch: handling an actor's queued messages in bounded turns.

No task or thread exists per idle actor. A cell is scheduled on the event
loop only when its mailbox turns non-empty, and then handles at most
``throughput`` messages before yielding: sync handlers in a plain loop
callback (``_drain_sync``), ``async def`` handlers in one task per turn
(``_drain_async``). The system lane runs first. Metrics are plain counters
(see :class:`troupe.metrics.ActorStats`). Also here: what a handler sees of
the message being handled (sender, headers, ``reply_expected``) and the
batching seam ``take_queued``.
"""

from __future__ import annotations

import asyncio
import logging
from time import perf_counter
from typing import TYPE_CHECKING

from .delivery import Queued, TrackedReply
from .envelope import Envelope, open_envelope
from .errors import ActorStopped
from .metrics import FAILED, FAST_BOUND
from .state import State
from .tracing import current_traceparent
from .tracing import enter as enter_trace
from .tracing import leave as leave_trace

if TYPE_CHECKING:
    from .cell import ActorCell

logger = logging.getLogger(__name__)

_RUNNING = State.RUNNING


def _schedule(self: ActorCell) -> None:
    self._scheduled = True
    if self._is_async:
        self._task = self._loop.create_task(self._drain_async())
    else:
        self._loop.call_soon(self._drain_sync)


def _finish_turn(self: ActorCell) -> None:
    self._scheduled = False
    self._current = None
    self._taken = None
    mailbox = self.mailbox
    if mailbox.system or (self.state is State.RUNNING and len(mailbox)):
        self._schedule()


def _run_system_lane(self: ActorCell) -> None:
    lane = self.mailbox.system
    while lane:  # a non-empty lane is a deque
        action = lane.popleft()
        try:
            action()
        except Exception:
            logger.exception("system message for actor %s failed", self.name)


def _drain_sync(self: ActorCell) -> None:
    mailbox = self.mailbox
    queue = mailbox.queue
    receive = self._receive
    budget = self._throughput
    # Metrics (see troupe.metrics): a turn is timed as a whole while this actor's
    # turns fit in the first histogram bucket, else each call is timed, chained
    # (a call's time runs from the previous one's end).
    stats = self.metrics
    each = False
    slow = 0  # calls already counted by observe()
    began = start = 0.0
    if stats is not None:
        each = stats.time_each
        began = start = perf_counter()
    traced = False
    if current_traceparent.get() is not None:
        leave_trace()  # inherited from whoever scheduled this turn
    while budget:
        if mailbox.system:
            lane = perf_counter() if stats is not None else 0.0
            self._run_system_lane()
            if stats is not None:  # system messages are not handler time
                lane = perf_counter() - lane
                start += lane
                began += lane
        if self.state is not _RUNNING or not queue:
            break
        item = queue.popleft()
        if mailbox.waiters:
            mailbox.admit_waiter()
        budget -= 1
        if type(item) is Envelope:
            self._current = item
            message = item.message
            reply = item.reply
            if item.headers is not None:
                traced = enter_trace(item.headers)
            if type(reply) is TrackedReply and not reply.start(self.name):
                if traced:
                    leave_trace()
                    traced = False
                continue
        else:
            message = item
            reply = None
            if self._current is not None:  # an earlier envelope of this turn
                self._current = None
        try:
            result = receive(message)
        except Exception as exc:
            if stats is not None:
                now = perf_counter()
                stats.observe(now - began)  # timing turns: it takes the turn so far
                stats.add(FAILED)
                slow += 1
                began = now
            if reply is not None and not reply.done():
                reply.set_exception(exc)
            if self._taken is not None:
                self._settle_taken(exc)
            self._failed(exc, message)
            if traced:
                leave_trace()
            break
        if each and stats is not None:
            now = perf_counter()
            if now - began >= FAST_BOUND:
                stats.observe(now - began)
                slow += 1
            began = now
        if reply is not None:
            if not reply.done():
                reply.set_result(result)
            self._current = None
        if traced:
            leave_trace()
            traced = False
            self._current = None
    if stats is not None:
        end = began if each or slow else perf_counter()
        stats.end_turn(self._throughput - budget, slow, end - start, each)
    self._finish_turn()


async def _drain_async(self: ActorCell) -> None:
    mailbox = self.mailbox
    receive = self._receive
    budget = self._throughput
    stats = self.metrics  # timing as in _drain_sync
    each = False
    slow = 0
    began = start = 0.0
    if stats is not None:
        each = stats.time_each
        began = start = perf_counter()
    traced = False
    if current_traceparent.get() is not None:
        leave_trace()
    while budget:
        if mailbox.system:
            lane = perf_counter() if stats is not None else 0.0
            self._run_system_lane()
            if stats is not None:  # system messages are not handler time
                lane = perf_counter() - lane
                start += lane
                began += lane
        if self.state is not _RUNNING or not mailbox.queue:
            break
        item = mailbox.pop()
        budget -= 1
        message, reply = open_envelope(item)
        if type(item) is Envelope:
            self._current = item
            if item.headers is not None:
                traced = enter_trace(item.headers)
            if type(reply) is TrackedReply and not reply.start(self.name):
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
            if stats is not None:  # the cancelled message is not counted
                end = began if each or slow else perf_counter()
                stats.end_turn(self._throughput - budget - 1, slow, end - start, each)
            raise
        except Exception as exc:
            if stats is not None:
                now = perf_counter()
                stats.observe(now - began)  # timing turns: it takes the turn so far
                stats.add(FAILED)
                slow += 1
                began = now
            if reply is not None and not reply.done():
                reply.set_exception(exc)
            if self._taken is not None:
                self._settle_taken(exc)
            self._failed(exc, message)
            if traced:
                leave_trace()
            break
        if each and stats is not None:
            now = perf_counter()
            if now - began >= FAST_BOUND:
                stats.observe(now - began)
                slow += 1
            began = now
        if reply is not None and not reply.done():
            reply.set_result(result)
        self._current = None
        if traced:
            leave_trace()
            traced = False
    if stats is not None:
        end = began if each or slow else perf_counter()
        stats.end_turn(self._throughput - budget, slow, end - start, each)
    self._finish_turn()


def take_queued(self: ActorCell, limit: int) -> list[Queued]:
    """Remove up to ``limit`` user messages queued behind the current one."""
    mailbox = self.mailbox
    taken: list[Queued] = []
    stats = self.metrics
    while len(taken) < limit and len(mailbox):
        item = mailbox.pop()
        if type(item) is Envelope:
            reply = item.reply
            if type(reply) is TrackedReply and not reply.start(self.name):
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


def _settle_taken(self: ActorCell, exc: BaseException) -> None:
    """Reject what the failed handler took with ``take_queued`` and left unsettled."""
    taken, self._taken = self._taken, None
    for queued in taken or ():
        queued.reject(exc)
