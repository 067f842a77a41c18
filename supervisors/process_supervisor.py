"""``ProcessSupervisor``: a tree of OS processes, each running its own ActorSystem.

The policy is the one actors use (:mod:`troupe.supervisors.policy`,
:mod:`troupe.backoff`): restart types decide whether an ended
process starts again, the strategy decides which siblings restart with it,
the restart intensity decides when the tree gives up, and a Backoff delays
every restart. Children are fresh interpreters (see ``process_launch``); the
parent learns of a death from the exit status at once, whatever the cause
(crash, ``kill -9``, the OOM killer).
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import sys
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from enum import StrEnum

from troupe.backoff import Backoff, BackoffState, Jitter
from troupe.errors import ConfigError, TroupeError

from .policy import RestartIntensity, RestartType, Strategy, children_to_restart, should_restart
from .process_child import ChildConfig
from .process_hooks import ProcessHooks
from .process_launch import ChildProcess
from .process_spec import ProcessSpec
from .process_target import resolve

logger = logging.getLogger(__name__)

EXIT_OK = 0
EXIT_FAILED = 1  # the tree gave up, or a child ended abnormally and was not restarted
EXIT_UNCLEAN_STOP = 3  # a child had to be killed (or failed) while stopping

DEFAULT_BACKOFF = Backoff(initial=0.5, maximum=30.0, jitter=Jitter.EQUAL, reset_after=60.0)


class ChildState(StrEnum):
    """Where a child process is in its life."""

    STARTING = "starting"  # launched; its tree is not up yet
    RUNNING = "running"  # its tree reported ready
    BACKOFF = "backoff"  # ended; restarts after a delay
    STOPPING = "stopping"  # draining after SIGTERM
    STOPPED = "stopped"  # stopped by the supervisor (or not started yet)
    EXITED = "exited"  # ended on its own and is not restarted (restart type)


@dataclass(frozen=True)
class ChildStatus:
    """A snapshot of one child process, from :meth:`ProcessSupervisor.status`."""

    name: str
    spec: str
    target: str
    state: ChildState
    pid: int | None
    restarts: int
    last_exit: int | None
    restart_in: float | None

    def describe(self) -> str:
        """One readable line, e.g. ``workers-0  running  pid 4242  restarts 1``."""
        parts = [f"{self.name:<16}", f"{self.state.value:<8}"]
        parts.append(f"pid {self.pid}" if self.pid is not None else "pid -")
        parts.append(f"restarts {self.restarts}")
        if self.last_exit is not None:
            parts.append(f"last exit {describe_exit(self.last_exit)}")
        if self.restart_in is not None:
            parts.append(f"restart in {self.restart_in:.2f} s")
        return "  ".join(parts)


class ProcessTreeFailed(TroupeError):
    """The tree gave up: a child kept dying faster than the restart intensity allows."""

    def __init__(self, child: str, target: str, returncode: int, intensity: RestartIntensity):
        self.child = child
        self.returncode = returncode
        super().__init__(
            f"child process {child!r} ({target}) exited with {describe_exit(returncode)} and "
            f"exceeded the restart intensity ({intensity.max_restarts} restarts within "
            f"{intensity.within:g} s); the tree gives up. Fix the child (see its log above) "
            "or raise max_restarts"
        )


def describe_exit(returncode: int) -> str:
    """``status 1`` or ``signal SIGKILL``."""
    if returncode < 0:
        try:
            return f"signal {signal.Signals(-returncode).name}"
        except ValueError:
            return f"signal {-returncode}"
    return f"status {returncode}"


class _Child:
    __slots__ = (
        "backoff",
        "handle",
        "last_exit",
        "name",
        "restart_at",
        "restarts",
        "spec",
        "state",
        "token",
    )

    def __init__(self, spec: ProcessSpec, name: str, backoff: Backoff) -> None:
        self.spec = spec
        self.name = name
        self.backoff = BackoffState(backoff)
        self.handle: ChildProcess | None = None
        self.state = ChildState.STOPPED
        self.restarts = 0
        self.last_exit: int | None = None
        self.restart_at: float | None = None
        self.token = 0

    def status(self, now: float) -> ChildStatus:
        restart_in = None
        if self.state is ChildState.BACKOFF and self.restart_at is not None:
            restart_in = max(0.0, self.restart_at - now)
        return ChildStatus(
            name=self.name,
            spec=self.spec.name,
            target=self.spec.target,
            state=self.state,
            pid=self.handle.pid if self.handle is not None else None,
            restarts=self.restarts,
            last_exit=self.last_exit,
            restart_in=restart_in,
        )


@dataclass(frozen=True)
class _Exited:
    child: _Child
    handle: ChildProcess
    returncode: int


@dataclass(frozen=True)
class _RestartDue:
    children: tuple[tuple[_Child, int], ...]


@dataclass(frozen=True)
class _Stop:
    reason: str


class ProcessSupervisor:
    """Start child processes from :class:`ProcessSpec` s and keep them running.

    >>> tree = ProcessSupervisor(
    ...     [ProcessSpec("myapp.consumers:build", count=4), ProcessSpec("myapp.api:Api")],
    ...     strategy="one_for_one", max_restarts=3, within=5.0,
    ... )

    ``await tree.run()`` starts every child, handles SIGTERM/SIGINT (drain every
    child, then stop) and SIGUSR1 (log the tree), and returns the exit status:
    0 after a clean stop, 1 when the tree gave up (``tree.failure`` names the
    child), 3 when a child had to be killed. ``start``/``stop``/``wait`` do the
    same piece by piece; ``status()`` tells which children run, their pids,
    restart counts and states. ``simple_one_for_one`` behaves as
    ``one_for_one`` (a spec's ``count`` already makes a pool).
    """

    def __init__(
        self,
        children: Sequence[ProcessSpec],
        *,
        strategy: Strategy | str = Strategy.ONE_FOR_ONE,
        max_restarts: int = 3,
        within: float = 5.0,
        backoff: Backoff | None = None,
        name: str = "troupe",
        hooks: Sequence[ProcessHooks] = (),
        log_level: str | None = None,
    ) -> None:
        if not children:
            raise ConfigError("children", "a process tree needs at least one ProcessSpec")
        try:
            self.strategy = Strategy(strategy)
        except ValueError:
            choices = ", ".join(s.value for s in Strategy)
            raise ConfigError("strategy", f"must be one of {choices}; got {strategy!r}") from None
        self.specs = list(children)
        self.name = name
        self.backoff = backoff or DEFAULT_BACKOFF
        self.intensity = RestartIntensity(max_restarts=max_restarts, within=within)
        self.hooks = list(hooks)
        self.log_level = log_level
        self.failure: ProcessTreeFailed | None = None
        self._children: list[_Child] = []
        for spec in self.specs:
            for child_name in spec.process_names():
                self._children.append(_Child(spec, child_name, self.backoff))
        names = [c.name for c in self._children]
        duplicates = sorted({n for n in names if names.count(n) > 1})
        if duplicates:
            raise ConfigError("children", f"process names must be unique; repeated: {duplicates}")
        self._events: asyncio.Queue[_Exited | _RestartDue | _Stop] | None = None
        self._supervisor: asyncio.Task[int] | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self._timers: list[asyncio.TimerHandle] = []
        self._stopping = False
        self._unclean: list[str] = []

    # -- public API ---------------------------------------------------------------------

    async def run(self) -> int:
        """Start, supervise until stopped or given up, and return the exit status.

        Installs handlers for SIGTERM/SIGINT (graceful stop; a second one kills
        the children) and SIGUSR1 (log the tree) when called on the main thread.
        """
        loop = asyncio.get_running_loop()
        installed: list[signal.Signals] = []
        if threading.current_thread() is threading.main_thread():
            for sig in (signal.SIGTERM, signal.SIGINT):
                loop.add_signal_handler(sig, self.request_stop, f"received {sig.name}")
                installed.append(sig)
            loop.add_signal_handler(signal.SIGUSR1, self.log_status)
            installed.append(signal.SIGUSR1)
        try:
            await self.start()
            return await self.wait()
        finally:
            for sig in installed:
                loop.remove_signal_handler(sig)

    async def start(self) -> None:
        """Check every target, then launch the children in order."""
        if self._supervisor is not None:
            raise RuntimeError(f"process tree {self.name!r} was already started")
        for spec in self.specs:
            resolve(spec.target)  # raises TargetError with a readable message
        self._events = asyncio.Queue()
        self._call_hooks("tree_starting")
        logger.info(
            "starting process tree %r: %d processes (%s)",
            self.name,
            len(self._children),
            ", ".join(f"{s.name} x{s.count}" for s in self.specs),
        )
        try:
            for child in self._children:
                await self._launch(child)
        except BaseException:
            await self._stop_children(self._children, final=True)
            raise
        self._supervisor = asyncio.get_running_loop().create_task(self._supervise())
        if self._stopping:
            self._events.put_nowait(_Stop("stop requested"))

    def request_stop(self, reason: str = "stop requested") -> None:
        """Begin a graceful stop (loop thread only); a second request kills the children."""
        if self._stopping:
            logger.warning("%s again: killing the children now", reason)
            for child in self._children:
                if child.handle is not None:
                    child.handle.signal(signal.SIGKILL)
            return
        self._stopping = True
        if self._events is not None:
            self._events.put_nowait(_Stop(reason))

    async def stop(self) -> int:
        """Drain and stop every child; the exit status."""
        self.request_stop()
        return await self.wait()

    async def wait(self) -> int:
        """Wait until the tree has stopped or given up; the exit status."""
        if self._supervisor is None:
            raise RuntimeError(f"process tree {self.name!r} is not started")
        return await asyncio.shield(self._supervisor)

    def status(self) -> list[ChildStatus]:
        """Every child process in start order: name, state, pid, restarts, last exit."""
        now = time.monotonic()
        return [child.status(now) for child in self._children]

    def describe(self) -> str:
        """The tree as readable lines (what SIGUSR1 logs)."""
        head = f"process tree {self.name!r} (root pid {os.getpid()}, strategy {self.strategy})"
        return "\n".join([head, *("  " + s.describe() for s in self.status())])

    def log_status(self) -> None:
        """Log :meth:`describe` at INFO."""
        logger.info("%s", self.describe())

    # -- supervision --------------------------------------------------------------------

    async def _supervise(self) -> int:
        assert self._events is not None
        try:
            while True:
                event = await self._events.get()
                if isinstance(event, _Stop):
                    logger.info("stopping process tree %r (%s)", self.name, event.reason)
                    break
                if isinstance(event, _Exited):
                    if event.child.handle is event.handle:
                        await self._child_exited(event.child, event.returncode)
                else:
                    await self._restart_due(event)
                if self.failure is not None:
                    break
                if all(c.state in (ChildState.STOPPED, ChildState.EXITED) for c in self._children):
                    logger.info("every child of %r has ended", self.name)
                    break
        finally:
            self._stopping = True
            for timer in self._timers:
                timer.cancel()
            await self._stop_children(self._children, final=True)
            self._call_hooks("tree_stopped")
        return self._exit_code()

    def _exit_code(self) -> int:
        if self.failure is not None:
            return EXIT_FAILED
        if self._unclean:
            logger.error("children not stopped cleanly: %s", ", ".join(self._unclean))
            return EXIT_UNCLEAN_STOP
        failed = [
            c.name for c in self._children if c.state is ChildState.EXITED and c.last_exit != 0
        ]
        if failed:
            logger.error("children ended abnormally and were not restarted: %s", failed)
            return EXIT_FAILED
        logger.info("process tree %r stopped cleanly", self.name)
        return EXIT_OK

    async def _child_exited(self, child: _Child, returncode: int) -> None:
        was_running = child.state is ChildState.RUNNING
        child.handle = None
        child.last_exit = returncode
        abnormal = returncode != 0
        when = "" if was_running else " before its tree was up"
        if returncode == -signal.SIGKILL:
            when += " (kill -9 or the out-of-memory killer)"
        log = logger.error if abnormal else logger.info
        log("child %s exited with %s%s", child.name, describe_exit(returncode), when)
        if not should_restart(child.spec.restart, abnormal):
            child.state = ChildState.EXITED
            logger.info("child %s is %s: not restarted", child.name, child.spec.restart.value)
            return
        now = time.monotonic()
        if not self.intensity.record(now):
            self.failure = ProcessTreeFailed(
                child.name, child.spec.target, returncode, self.intensity
            )
            child.state = ChildState.EXITED
            logger.error("%s", self.failure)
            return
        delay = child.backoff.next_delay(now)
        order = [c.name for c in self._children]
        names = set(children_to_restart(self.strategy, order, child.name))
        group = [c for c in self._children if c.name in names and c.state is not ChildState.EXITED]
        siblings = [c for c in group if c is not child]
        if siblings:
            logger.info(
                "%s: restarting %s with %s",
                self.strategy.value,
                ", ".join(c.name for c in siblings),
                child.name,
            )
            await self._stop_children(siblings, final=False)
        restarting = []
        for c in group:
            if c is not child and c.spec.restart is RestartType.TEMPORARY:
                c.state = ChildState.EXITED
                continue
            c.state = ChildState.BACKOFF
            c.token += 1
            c.restart_at = now + delay
            restarting.append((c, c.token))
        logger.info(
            "restarting %s in %.2f s (restart %d of %d allowed within %g s)",
            ", ".join(c.name for c, _ in restarting),
            delay,
            self.intensity.count(now),
            self.intensity.max_restarts,
            self.intensity.within,
        )
        event = _RestartDue(tuple(restarting))
        events = self._events
        assert events is not None
        self._timers = [t for t in self._timers if not t.cancelled()]
        self._timers.append(asyncio.get_running_loop().call_later(delay, events.put_nowait, event))

    async def _restart_due(self, event: _RestartDue) -> None:
        for child, token in event.children:
            if child.token == token and child.state is ChildState.BACKOFF:
                child.restarts += 1
                child.restart_at = None
                await self._launch(child)

    async def _launch(self, child: _Child) -> None:
        spec = child.spec
        config = ChildConfig(
            name=child.name,
            target=spec.target,
            tree=self.name,
            shutdown=spec.shutdown,
            kill_grace=spec.kill_grace,
            log_level=self.log_level,
            sys_path=[p or os.getcwd() for p in sys.path],
            child_hooks=[path for hook in self.hooks for path in hook.child_hooks()],
        )
        env = dict(os.environ)
        for hook in self.hooks:
            env.update(hook.child_environment())
        env.update(spec.env)
        handle = await ChildProcess.start(config, env)
        child.handle = handle
        child.state = ChildState.STARTING
        logger.info("started child %s (pid %d): %s", child.name, handle.pid, spec.target)
        self._call_hooks("child_started", child.status(time.monotonic()))
        self._spawn_task(handle.watch_ready(lambda: self._ready(child, handle)))
        self._spawn_task(self._watch_exit(child, handle))

    def _ready(self, child: _Child, handle: ChildProcess) -> None:
        if child.handle is handle and child.state is ChildState.STARTING:
            child.state = ChildState.RUNNING
            logger.info("child %s (pid %d) is up", child.name, handle.pid)

    async def _watch_exit(self, child: _Child, handle: ChildProcess) -> None:
        code = await handle.wait()
        status = child.status(time.monotonic())
        self._call_hooks("child_exited", status, code)
        assert self._events is not None
        self._events.put_nowait(_Exited(child, handle, code))

    async def _stop_children(self, children: Sequence[_Child], *, final: bool) -> None:
        """Stop in reverse start order, spec by spec (OTP's ordered shutdown): the
        processes of one spec get SIGTERM together and drain side by side, and the
        next spec up is stopped once they are gone; SIGKILL past each deadline."""
        for child in children:
            if child.handle is None and child.state is ChildState.BACKOFF:
                child.state = ChildState.STOPPED
                child.restart_at = None
        for group in reversed(_by_spec(children)):
            running = [c for c in reversed(group) if c.handle is not None]
            for child in running:
                child.state = ChildState.STOPPING
                assert child.handle is not None
                child.handle.signal(signal.SIGTERM)
            if running:
                await asyncio.gather(*(self._await_stop(c, final) for c in running))

    async def _await_stop(self, child: _Child, final: bool) -> None:
        handle = child.handle
        assert handle is not None
        limit = child.spec.shutdown + child.spec.kill_grace
        clean = True
        try:
            code = await asyncio.wait_for(asyncio.shield(handle.wait()), limit)
        except TimeoutError:
            logger.error(
                "child %s (pid %d) did not stop within %.1f s; sending SIGKILL",
                child.name,
                handle.pid,
                limit,
            )
            handle.signal(signal.SIGKILL)
            code = await handle.wait()
            clean = False
        if code not in (0, -signal.SIGTERM):
            clean = False
        log = logger.info if clean else logger.error
        log("child %s (pid %d) stopped with %s", child.name, handle.pid, describe_exit(code))
        if child.handle is handle:
            child.handle = None
            child.state = ChildState.STOPPED
            child.last_exit = code
        if final and not clean:
            self._unclean.append(child.name)

    # -- helpers ------------------------------------------------------------------------

    def _spawn_task(self, coro: object) -> None:
        task: asyncio.Task[None] = asyncio.get_running_loop().create_task(coro)  # type: ignore[arg-type]
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def _call_hooks(self, method: str, *args: object) -> None:
        for hook in self.hooks:
            try:
                getattr(hook, method)(self, *args)
            except Exception:
                logger.exception("process hook %s.%s failed", type(hook).__name__, method)


def _by_spec(children: Sequence[_Child]) -> list[list[_Child]]:
    """Children grouped by the spec they come from, groups in start order."""
    groups: dict[int, list[_Child]] = {}
    for child in children:
        groups.setdefault(id(child.spec), []).append(child)
    return list(groups.values())
