"""``ActorCell``: the runtime side of one actor — mailbox, state, dispatch, lifecycle.

Dispatch keeps no task or thread per idle actor. A cell is scheduled on the
event loop only when its mailbox turns non-empty, and then handles at most
``throughput`` messages before yielding: sync handlers in a plain loop
callback, ``async def`` handlers in one task per turn.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
import threading
from asyncio import _get_running_loop
from collections.abc import Awaitable, Callable
from threading import get_ident
from time import perf_counter
from typing import TYPE_CHECKING, Any

from .actor import Actor, is_async_callable
from .child import Child
from .delivery import Queued, TrackedReply
from .envelope import Envelope, open_envelope
from .errors import ActorStopped, ConfigError, MailboxFull, MessageDropped
from .mailbox import ACCEPTED, Accepted, Mailbox, MailboxConfig
from .metrics import DEAD_LETTERED, ESCALATIONS, FAILED, FAST_BOUND
from .ref import ActorRef, outside_loop
from .restart import RestartPolicy
from .state import State, Terminated
from .timers import Timers
from .tracing import current_traceparent
from .tracing import enter as enter_trace
from .tracing import leave as leave_trace

if TYPE_CHECKING:
    from .clock import TimerHandle
    from .metrics import ActorStats
    from .system import ActorSystem

logger = logging.getLogger(__name__)

ActorFactory = Callable[..., "Actor"]


_RUNNING = State.RUNNING
_STOPPING = State.STOPPING
_DEFAULT_HOOK = Actor.on_child_failure


def _stopped_by(envelope: Envelope, name: str, reason: BaseException) -> None:
    """Settle a waiting sender with ActorStopped whose ``__cause__`` is ``reason``."""
    reply = envelope.reply
    if reply is not None and not reply.done():
        error = ActorStopped(name)
        error.__cause__ = reason
        reply.set_exception(error)


_THREAD_POLL = 0.5  # seconds between checks that a blocked thread tell's loop still runs


class ActorCell:
    """Owns one actor instance, its mailbox and its place in the tree."""

    __slots__ = (
        "_backoff",
        "_current",
        "_instance_args",
        "_is_async",
        "_lifecycle",
        "_loop",
        "_receive",
        "_scheduled",
        "_stopped",
        "_taken",
        "_task",
        "_thread_id",
        "_throughput",
        "_timers",
        "actor",
        "children",
        "factory",
        "failed_in_start",
        "failure",
        "mailbox",
        "metrics",
        "name",
        "parent",
        "ref",
        "restarts",
        "shutdown_timeout",
        "state",
        "system",
        "watchers",
    )

    def __init__(
        self,
        system: ActorSystem,
        name: str,
        factory: ActorFactory,
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
        parent: ActorCell | None,
        mailbox: MailboxConfig,
        throughput: int,
    ) -> None:
        self.system = system
        self.name = name
        self.factory = factory
        self._instance_args = (args, kwargs)
        self.parent = parent
        self.ref = ActorRef(self)
        self.mailbox = Mailbox(mailbox, self._overflowed)
        self._throughput = throughput
        self._loop = system.loop
        self._thread_id = system.thread_id
        self._scheduled = False
        self._current: Envelope | None = None
        self._taken: list[Queued] | None = None  # see take_queued
        self._backoff: TimerHandle | None = None  # a restart waiting out its delay
        self._timers: Timers | None = None
        self._stopped: asyncio.Future[None] | None = None
        self._task: asyncio.Task[Any] | None = None
        self._lifecycle: asyncio.Task[Any] | None = None
        self.children: dict[str, ActorCell] | None = None
        self.watchers: list[Callable[[Terminated], Any]] | None = None
        self.restarts = 0
        self.metrics: ActorStats | None = None  # the system sets it when metrics are on
        self.shutdown_timeout: float | None = None  # parent kills it past this stop deadline
        self.failure: BaseException | None = None
        self.failed_in_start = False
        self.state = State.STARTING
        self.actor = self._new_instance()
        self._bind(self.actor)
        policy = type(self.actor).restart_policy
        if policy is not None and not isinstance(policy, RestartPolicy):
            raise ConfigError(
                "restart_policy",
                f"{type(self.actor).__name__}.restart_policy must be a RestartPolicy, "
                f"got {policy!r}",
            )

    # -- instance management -----------------------------------------------------------

    def _new_instance(self) -> Actor:
        args, kwargs = self._instance_args
        factory = self.factory
        if isinstance(factory, type) and issubclass(factory, Actor):
            instance = factory.__new__(factory)
            instance._troupe_cell = self
            instance.__init__(*args, **kwargs)  # type: ignore[misc]
            return instance
        made = factory(*args, **kwargs)
        if not isinstance(made, Actor):
            raise TypeError(
                f"actor factory {factory!r} returned {type(made).__name__}, not an Actor"
            )
        made._troupe_cell = self
        return made

    def _bind(self, actor: Actor) -> None:
        self._receive = actor._troupe_handler()
        self._is_async = is_async_callable(self._receive)

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

    # -- properties used by Actor -------------------------------------------------------

    @property
    def timers(self) -> Timers:
        if self._timers is None:
            self._timers = Timers(self)
        return self._timers

    @property
    def current_sender(self) -> ActorRef | None:
        return self._current.sender if self._current is not None else None

    @property
    def current_headers(self) -> dict[str, str]:
        current = self._current
        if current is None or current.headers is None:
            return {}
        return current.headers

    @property
    def is_terminated(self) -> bool:
        return self.state is State.STOPPED

    @property
    def reply_expected(self) -> bool:
        current = self._current
        return current is not None and current.reply is not None

    def mailbox_room(self) -> int:
        """Messages the user lane takes before its overflow policy applies (0 once stopping)."""
        if self.state >= _STOPPING:
            return 0
        mailbox = self.mailbox
        return max(0, mailbox.capacity - len(mailbox) - mailbox.waiting)

    def take_queued(self, limit: int) -> list[Queued]:
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

    def _settle_taken(self, exc: BaseException) -> None:
        """Reject what the failed handler took with ``take_queued`` and left unsettled."""
        taken, self._taken = self._taken, None
        for queued in taken or ():
            queued.reject(exc)

    # -- intake -------------------------------------------------------------------------

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
            self._undeliverable(item, "recipient stopped")
            return ACCEPTED
        if _get_running_loop() is None:
            raise outside_loop(self.name, "tell", True)
        pending = self.mailbox.put(item, self.name)
        if self.state is _RUNNING and not self._scheduled:
            self._schedule()
        return pending

    def _deliver_from_thread(self, item: Any) -> Accepted:
        """Hand a message over from a foreign thread; block while backpressure parks it.

        Raises ``MailboxFull`` in the calling thread when the policy refuses it,
        and RuntimeError when the system's loop is not running.
        """
        loop = self._loop
        if loop.is_closed():
            self._undeliverable(item, "system closed")
            return ACCEPTED
        if not loop.is_running():
            raise outside_loop(self.name, "tell", False)
        done: concurrent.futures.Future[None] = concurrent.futures.Future()
        taken = False

        def put_on_loop() -> None:
            nonlocal taken
            taken = True
            try:
                pending = self.deliver(item)
            except BaseException as exc:
                done.set_exception(exc)
                return
            if type(pending) is Accepted:
                done.set_result(None)
            else:
                assert isinstance(pending, asyncio.Future)
                pending.add_done_callback(lambda _: done.set_result(None))

        loop.call_soon_threadsafe(put_on_loop)
        while True:
            try:
                done.result(timeout=_THREAD_POLL)
                return ACCEPTED
            except concurrent.futures.TimeoutError:
                if not taken and loop.is_closed():  # closed before it ran put_on_loop
                    self._undeliverable(item, "system closed")
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
            self.system.dead_letters.publish(message, self.name, "mailbox full")
        else:
            self.system.note_dropped(self, message)

    def _undeliverable(self, item: Any, reason: str) -> None:
        message, reply = open_envelope(item)
        if reply is not None and not reply.done():
            reply.set_exception(ActorStopped(self.name))
        if self.metrics is not None:
            self.metrics.add(DEAD_LETTERED)
        self.system.dead_letters.publish(message, self.name, reason)

    # -- dispatch -----------------------------------------------------------------------

    def _schedule(self) -> None:
        self._scheduled = True
        if self._is_async:
            self._task = self._loop.create_task(self._drain_async())
        else:
            self._loop.call_soon(self._drain_sync)

    def _finish_turn(self) -> None:
        self._scheduled = False
        self._current = None
        self._taken = None
        mailbox = self.mailbox
        if mailbox.system or (self.state is State.RUNNING and len(mailbox)):
            self._schedule()

    def _run_system_lane(self) -> None:
        lane = self.mailbox.system
        while lane:  # a non-empty lane is a deque
            action = lane.popleft()
            try:
                action()
            except Exception:
                logger.exception("system message for actor %s failed", self.name)

    def _drain_sync(self) -> None:
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

    async def _drain_async(self) -> None:
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

    # -- failure and directives -----------------------------------------------------------

    def _failed(self, exc: BaseException, message: Any, *, in_start: str | None = None) -> None:
        """Suspend after ``exc`` (from a handler, or the lifecycle hook ``in_start``) and
        let the parent's ``on_child_failure`` (or the system's restart policy) decide."""
        self.state = State.SUSPENDED
        self.failure = exc
        self.failed_in_start = in_start is not None
        self.system.note_failure(self, exc, message, hook=in_start)
        parent = self.parent
        if parent is not None and type(parent.actor).on_child_failure is not _DEFAULT_HOOK:
            parent.send_system(lambda: parent.actor.on_child_failure(Child(self), exc))
            return
        self.system.apply_restart_policy(Child(self), exc)

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
        if delay > 0 and not self.system.is_closing:  # draining waits out no backoff
            self._backoff = self.system.clock.call_later(delay, self._begin_restart, cause)
        else:
            self._begin_restart(cause)

    def restart_now(self) -> None:
        """Cut a pending restart delay short (shutdown drains without waiting out backoffs)."""
        backoff = self._backoff
        if backoff is not None:
            backoff.cancel()
            self._begin_restart(self.failure or RuntimeError("restart requested"))

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

    # -- stopping -----------------------------------------------------------------------

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
        try:
            await self._call_hook("on_stop")
        except Exception:
            logger.exception("on_stop of %s failed", self.name)
        self._terminate(reason)

    async def _stop_children(self, reason: BaseException | None) -> None:
        if not self.children:
            return
        for child in reversed(list(self.children.values())):
            await child.stop_within(child.shutdown_timeout)

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
        for item in self.mailbox.drain():
            if reason is not None and type(item) is Envelope:
                _stopped_by(item, self.name, reason)
            self._undeliverable(item, "recipient stopped")
        self.mailbox.system = None
        self.system.unregister(self)
        if self.parent is not None and self.parent.children:
            self.parent.children.pop(self.name, None)
        if self.watchers:
            notice = Terminated(self.ref, reason)
            for watcher in self.watchers:
                try:
                    watcher(notice)
                except Exception:
                    logger.exception("death watcher of %s failed", self.name)
            self.watchers = None
        if self._stopped is not None and not self._stopped.done():
            self._stopped.set_result(None)

    # -- death watch --------------------------------------------------------------------

    def add_watcher(self, callback: Callable[[Terminated], Any]) -> None:
        """Call ``callback(Terminated)`` once this actor stops (at once if it has)."""
        if self.state is State.STOPPED:
            callback(Terminated(self.ref, self.failure))
            return
        if self.watchers is None:
            self.watchers = []
        self.watchers.append(callback)

    def remove_watcher(self, callback: Callable[[Terminated], Any]) -> None:
        """Stop calling ``callback`` when this actor stops."""
        if self.watchers and callback in self.watchers:
            self.watchers.remove(callback)

    def cancel_tasks(self) -> None:
        """Cancel the cell's running turn and lifecycle step (used past a shutdown deadline)."""
        for task in (self._task, self._lifecycle):
            if task is not None and not task.done():
                task.cancel()

    def is_idle(self) -> bool:
        """True when nothing is queued, scheduled or in a lifecycle step."""
        lifecycle = self._lifecycle is not None and not self._lifecycle.done()
        mailbox = self.mailbox
        return not (
            self._scheduled
            or lifecycle
            or len(mailbox)
            or mailbox.system
            or mailbox.waiting
            or self.state is State.SUSPENDED
        )

    def live_tasks(self) -> list[asyncio.Task[Any]]:
        """The cell's tasks that have not finished."""
        return [t for t in (self._task, self._lifecycle) if t is not None and not t.done()]

    def __repr__(self) -> str:
        return f"<ActorCell {self.name} {self.state.name}>"


__all__ = ["ActorCell", "MailboxFull", "State", "Terminated"]
