"""``Supervisor``: an actor that starts children from specs and keeps them running.

OTP semantics, with failure per message: children start in order and stop in
reverse order; a failed child is resumed, restarted, stopped or escalated as the
spec's decider says; a restart takes the siblings its strategy names and happens
at once, unless the child is in a crash loop (failures in a row with nothing
handled between: backoff, then past the limit the supervisor stops its children
and fails, so its own supervisor decides; at the root, the system stops with
:class:`RestartIntensityExceeded`).

A restart is done in place: the child keeps its ref and its pending mailbox
(``Child.restart``). Only a child that *stopped* (a permanent child that
exited normally) is started again as a new actor under the same name.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from functools import partial
from typing import TYPE_CHECKING, Any

from troupe import Actor, ActorRef, Child, ConfigError, Props, State, SystemClosed, Terminated
from troupe.clock import TimerHandle

from .errors import RestartIntensityExceeded, SupervisorRequestError
from .policy import Directive, RestartTracker, RestartType, Strategy, plan_restart
from .spec import ChildSpec, SupervisorSpec

if TYPE_CHECKING:
    from troupe.system import ActorSystem

logger = logging.getLogger(__name__)

__all__ = [
    "ChildInfo",
    "ChildSpec",
    "StartChild",
    "Supervisor",
    "SupervisorSpec",
    "TerminateChild",
    "WhichChildren",
    "start_child",
    "start_supervisor",
    "terminate_child",
    "which_children",
]


# -- requests (ask the supervisor; the helpers below wrap them) ---------------------------


@dataclass(frozen=True, slots=True)
class StartChild:
    """Start a child: for a pool, ``args``/``kwargs`` extend the template's; otherwise
    ``spec`` is added to the end of the children. The reply is the child's ref."""

    args: tuple[Any, ...] = ()
    kwargs: Mapping[str, Any] = field(default_factory=dict)
    name: str | None = None
    spec: ChildSpec | None = None


@dataclass(frozen=True, slots=True)
class TerminateChild:
    """Stop a child (within its shutdown deadline) and forget its spec."""

    name: str


@dataclass(frozen=True, slots=True)
class WhichChildren:
    """Reply: a :class:`ChildInfo` per child, in start order."""


@dataclass(frozen=True, slots=True)
class ChildInfo:
    """One child as its supervisor sees it; ``ref`` is None while it waits to be started."""

    name: str
    ref: ActorRef | None
    restart: RestartType
    restarts: int


@dataclass(frozen=True, slots=True)
class _Refused:
    error: BaseException


class _Slot:
    """A child's place in the supervisor: its spec and current incarnation."""

    __slots__ = ("base", "child", "handled", "restarts", "spec", "target", "timer")

    def __init__(self, spec: ChildSpec) -> None:
        self.spec = spec
        self.child: Child | None = None
        self.base = 0  # restarts before the current incarnation was started
        self.restarts = 0  # restarts in all, once the child has stopped
        self.target = 0  # a restart is pending while child.restarts < target
        self.handled: BaseException | None = None  # failure already covered by a restart
        self.timer: TimerHandle | None = None  # pending start of a stopped child


class Supervisor(Actor):
    """An actor that supervises the children of a :class:`SupervisorSpec`.

    Start it with ``spec.spawn(system)`` (or ``system.spawn(Supervisor, spec)``,
    or ``self.spawn(Supervisor, spec)`` inside an actor). Its failures go to its
    own parent: nest specs to build a tree.
    """

    def __init__(self, spec: SupervisorSpec) -> None:
        if not isinstance(spec, SupervisorSpec):
            raise ConfigError("supervisor", f"Supervisor takes a SupervisorSpec, got {spec!r}")
        self.spec = spec
        self._slots: dict[str, _Slot] = {}
        self._tracker = RestartTracker(spec.intensity(), spec.backoff)
        self._closing = False
        self._failed: BaseException | None = None
        self._give_up_task: asyncio.Task[None] | None = None
        self._ids = itertools.count(1)

    # -- lifecycle ----------------------------------------------------------------------

    async def on_start(self) -> None:
        if self.spec.strategy is Strategy.SIMPLE_ONE_FOR_ONE:
            return
        for spec in self.spec.child_specs:
            if not self._active():
                return
            child = self._start(spec, spec.child_name)
            await child.wait_started()

    def on_stop(self) -> None:
        self._closing = True
        for slot in self._slots.values():
            if slot.timer is not None:
                slot.timer.cancel()
        task = self._give_up_task
        if task is not None and not task.done() and task is not asyncio.current_task():
            task.cancel()

    # -- requests -----------------------------------------------------------------------

    async def receive(self, message: Any) -> Any:
        if isinstance(message, StartChild):
            return await self._start_child(message)
        if isinstance(message, TerminateChild):
            return await self._terminate_child(message.name)
        if isinstance(message, WhichChildren):
            return self.which_children()
        logger.warning("supervisor %s dropped a message it does not handle: %r", self.name, message)
        self.system.dead_letters.publish(message, self.name, "not a supervisor request")
        return None

    def which_children(self) -> list[ChildInfo]:
        """The children in start order."""
        infos = []
        for name, slot in self._slots.items():
            child = slot.child
            alive = child is not None and child.state is not State.STOPPED
            ref = child.ref if alive and child is not None else None
            restarts = slot.base + child.restarts if child is not None else slot.restarts
            infos.append(ChildInfo(name, ref, slot.spec.restart, restarts))
        return infos

    async def _start_child(self, request: StartChild) -> ActorRef | _Refused:
        if not self._active():
            return _Refused(SupervisorRequestError(f"supervisor {self.name!r} is stopping"))
        try:
            spec, name = self._new_child_spec(request)
            child = self._start(spec, name)
        except Exception as exc:
            return _Refused(exc)
        await child.wait_started()
        return child.ref

    def _new_child_spec(self, request: StartChild) -> tuple[ChildSpec, str]:
        if self.spec.strategy is Strategy.SIMPLE_ONE_FOR_ONE:
            if request.spec is not None:
                raise SupervisorRequestError(
                    f"supervisor {self.name!r} is a simple_one_for_one pool: it starts children "
                    "from its template; pass args, not a spec"
                )
            template = self.spec.child_specs[0]
            name = request.name or f"{template.child_name}-{next(self._ids)}"
            kwargs = {**template.kwargs, **request.kwargs}
            return replace(template, args=template.args + request.args, kwargs=kwargs), name
        if request.spec is None:
            raise SupervisorRequestError(
                f"supervisor {self.name!r} uses {self.spec.strategy.value}: pass a ChildSpec"
            )
        name = request.spec.child_name
        if name in self._slots:
            raise SupervisorRequestError(f"supervisor {self.name!r} already has a child {name!r}")
        return request.spec, name

    async def _terminate_child(self, name: str) -> bool | _Refused:
        slot = self._slots.pop(name, None)
        if slot is None:
            missing = SupervisorRequestError(f"supervisor {self.name!r} has no child {name!r}")
            return _Refused(missing)
        self._tracker.forget(name)
        if slot.timer is not None:
            slot.timer.cancel()
        child = slot.child
        if child is not None and child.state is not State.STOPPED:
            await child.stop_within(slot.spec.shutdown)
        return True

    # -- failures and exits (run in the supervisor's system lane) -------------------------

    def on_child_failure(self, child: Child, exc: BaseException) -> None:
        """Apply the decider's directive to a failed child (called by the runtime)."""
        if not self._active():
            return
        slot = self._slots.get(child.name)
        if slot is None or slot.child != child or child.failure is not exc:
            return  # a child we no longer manage, or a failure a restart already covered
        if slot.handled is exc:
            return
        try:
            directive = Directive(self.spec.decider(exc))
        except Exception:
            logger.exception("decider of supervisor %s failed; escalating", self.name)
            directive = Directive.ESCALATE
        if directive is Directive.RESUME and (
            child.failed_in_start or isinstance(child.actor, Supervisor)
        ):
            # nothing to resume: the instance never started, or a supervisor gave up on
            # its children (escalated or hit its restart limit) and must start afresh
            directive = Directive.RESTART
        logger.info("supervisor %s: %s %s after %r", self.name, directive.value, child.name, exc)
        if directive is Directive.RESUME:
            slot.handled = exc
            child.resume()
        elif directive is Directive.STOP:
            self._remove(child.name, exc)
        elif directive is Directive.ESCALATE:
            self._fail(exc)
        else:
            self._child_ended(child.name, abnormal=True, cause=exc, failed=child)

    def _child_terminated(self, child: Child, reason: BaseException | None) -> None:
        if not self._active():
            return
        slot = self._slots.get(child.name)
        if slot is None or slot.child != child:
            return  # removed or replaced by the supervisor itself
        slot.restarts = slot.base + child.restarts
        slot.child = None
        self._child_ended(child.name, abnormal=reason is not None, cause=reason)

    def _child_ended(
        self,
        name: str,
        *,
        abnormal: bool,
        cause: BaseException | None,
        failed: Child | None = None,
    ) -> None:
        """Apply the strategy after ``name`` ended: ``failed`` is the child when it
        failed (the actor rule of ``RestartTracker.record_failure``: at once unless in
        a crash loop); a child that stopped counts in the OTP window (``record``)."""
        children = [(n, s.spec.restart) for n, s in self._slots.items()]
        plan = plan_restart(self.spec.strategy, children, name, abnormal)
        for gone in plan.remove:
            self._remove(gone, cause if gone == name else None)
        if not plan.restart:
            return
        now = self.system.clock.now()
        if failed is not None:
            delay = self._tracker.record_failure(
                name,
                now,
                ran_well=failed.failed_after_success,
                lifecycle=failed.failed_in_start,
                answered=failed.failure_answered,
            )
        else:
            delay = self._tracker.record(name, now)
        if delay is None:
            self._give_up(name, cause, in_row=failed is not None)
            return
        logger.info(
            "supervisor %s restarts %s in %.3f s", self.name, ", ".join(plan.restart), delay
        )
        for restarting in plan.restart:
            self._restart(restarting, delay)

    def _restart(self, name: str, delay: float) -> None:
        slot = self._slots[name]
        child = slot.child
        if child is None or child.state is State.STOPPED:
            if child is not None:
                slot.restarts = slot.base + child.restarts
            slot.child = None
            if slot.timer is not None:
                slot.timer.cancel()
                slot.timer = None
            if delay > 0:
                lane = self._me.call_soon
                slot.timer = self.system.clock.call_later(delay, lane, partial(self._respawn, name))
            else:
                self._respawn(name)
            return
        if child.state is State.STOPPING or child.restarts < slot.target:
            return  # on its way out (its exit will be handled), or a restart is pending
        slot.target = child.restarts + 1
        slot.handled = child.failure
        child.restart(delay)  # a running sibling restarts between two of its messages

    def _respawn(self, name: str) -> None:
        slot = self._slots.get(name)
        if slot is None or slot.child is not None or not self._active():
            return
        slot.timer = None
        try:
            child = self._start(slot.spec, name, restarts=slot.restarts + 1)
        except SystemClosed:
            return
        except Exception as exc:
            logger.error("supervisor %s could not start %s: %r", self.name, name, exc)
            slot.restarts += 1
            self._child_ended(name, abnormal=True, cause=exc)
            return
        child.note_restart()  # counted like an in-place restart
        self._me.order_children(self._slots)  # back to its place: stops stay in reverse order

    def _remove(self, name: str, reason: BaseException | None) -> None:
        slot = self._slots.pop(name, None)
        if slot is None:
            return
        self._tracker.forget(name)
        if slot.timer is not None:
            slot.timer.cancel()
        child = slot.child
        if child is None or child.state >= State.STOPPING:
            return
        stopped = child.stop(reason)
        if slot.spec.shutdown is not None:
            kill = self.system.clock.call_later(slot.spec.shutdown, child.kill, reason)
            stopped.add_done_callback(lambda _: kill.cancel())

    # -- giving up ----------------------------------------------------------------------

    def _give_up(self, child: str, cause: BaseException | None, *, in_row: bool = False) -> None:
        spec = self.spec
        count = self._tracker.failures_in_row(child) if in_row else None
        error = RestartIntensityExceeded(
            self.name, child, spec.max_restarts, spec.within, cause, in_row=count
        )
        logger.error("%s", error)
        self._failed = error
        for slot in self._slots.values():
            if slot.timer is not None:
                slot.timer.cancel()
        self._give_up_task = self.system.loop.create_task(self._stop_children_and_fail(error))

    async def _stop_children_and_fail(self, error: BaseException) -> None:
        for slot in reversed(list(self._slots.values())):
            child = slot.child
            if child is not None and child.state is not State.STOPPED:
                await child.stop_within(slot.spec.shutdown, error)
        self._slots.clear()
        self._fail(error)

    def _fail(self, error: BaseException) -> None:
        """Fail this supervisor: its parent decides; a root stops the system."""
        self._failed = error
        me = self._me
        if me.parent is None:
            me.stop(error)  # watchers of the root see why it stopped
            self.system.fail(error)
        else:
            me.escalate(error)

    # -- helpers ------------------------------------------------------------------------

    @property
    def _me(self) -> Child:
        return Child.of(self.ref)

    def _active(self) -> bool:
        return not self._closing and self._failed is None and self._me.state < State.STOPPING

    def _start(self, spec: ChildSpec, name: str, restarts: int = 0) -> Child:
        factory: Any = spec.factory
        args = spec.args
        if isinstance(factory, SupervisorSpec):
            factory, args = Supervisor, (factory, *args)
        props = Props(factory, *args, **dict(spec.kwargs))
        ref = self.spawn(props, name=name, mailbox=spec.mailbox)
        child = Child.of(ref)
        child.shutdown_timeout = spec.shutdown
        slot = self._slots.get(name)
        if slot is None:
            slot = self._slots[name] = _Slot(spec)
        slot.child = child
        slot.base = restarts
        slot.target = 0
        slot.handled = None
        self.system.watch(ref, self._watcher(child))
        return child

    def _watcher(self, child: Child) -> Callable[[Terminated], None]:
        lane = self._me.call_soon

        def on_terminated(notice: Terminated) -> None:
            lane(partial(self._child_terminated, child, notice.reason))

        return on_terminated


# -- helpers for callers ----------------------------------------------------------------


def _unwrap(reply: Any) -> Any:
    if isinstance(reply, _Refused):
        raise reply.error
    return reply


async def start_supervisor(system: ActorSystem, spec: SupervisorSpec) -> ActorRef:
    """Spawn ``spec`` at the top of ``system`` and wait until its children have started."""
    ref = spec.spawn(system)
    await ref.ask(WhichChildren(), timeout=None)
    return ref


async def start_child(
    supervisor: ActorRef,
    *args: Any,
    name: str | None = None,
    spec: ChildSpec | None = None,
    **kwargs: Any,
) -> ActorRef:
    """Start a child: a pool member (``args``/``kwargs`` extend the template's), or
    ``spec`` under a static supervisor. Returns its ref once its ``on_start`` ran."""
    request = StartChild(tuple(args), kwargs, name, spec)
    ref: ActorRef = _unwrap(await supervisor.ask(request, timeout=None))
    return ref


async def terminate_child(supervisor: ActorRef, child: str | ActorRef) -> None:
    """Stop a child within its shutdown deadline and remove it from the supervisor."""
    name = child.name if isinstance(child, ActorRef) else child
    _unwrap(await supervisor.ask(TerminateChild(name), timeout=None))


async def which_children(supervisor: ActorRef) -> list[ChildInfo]:
    """The supervisor's children in start order."""
    infos: list[ChildInfo] = await supervisor.ask(WhichChildren(), timeout=None)
    return infos
