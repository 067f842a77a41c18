"""``ActorSystem``: one per process and event loop; owns actors, names, clock, dead letters."""

from __future__ import annotations

import asyncio
import itertools
import logging
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from types import TracebackType
from typing import TYPE_CHECKING, Any

from .cell import ActorCell, ActorFactory, State, Terminated
from .child import Child
from .clock import Clock, RealClock
from .dead_letters import RECIPIENT_STOPPED, DeadLetters
from .deadlines import AskDeadlines
from .dispatch import INLINE_RUN
from .errors import (
    ActorNotFound,
    ConfigError,
    NameTaken,
    SystemClosed,
    check_timeout,
    require_int,
)
from .hooks import HandlerHook
from .loop_lag import LoopLagMonitor, SlowHandlers, check_seconds
from .mailbox import MailboxConfig
from .metrics import DROPPED, FAST_BOUND, RESTARTS, SystemMetrics
from .middleware import HandlerHookMiddleware, Middleware, MiddlewareChain
from .props import Props
from .ref import ActorRef
from .restart import RestartPolicy, RestartTracker
from .run_queue import DirectQueue, RunQueue
from .thread_intake import ThreadIntake

if TYPE_CHECKING:
    from .cell_state import CellState
    from .metrics.export import MetricsEndpoint

logger = logging.getLogger(__name__)

DEFAULT_THROUGHPUT = 64
DEFAULT_THROUGHPUT_DEADLINE = 0.01


@dataclass(frozen=True, slots=True)
class ShutdownReport:
    """What a shutdown achieved; past its deadline, exactly what was cut short.

    ``drained`` is True when every mailbox was empty before the deadline;
    ``undelivered`` counts messages that went to dead letters instead;
    ``cancelled`` counts tasks cut off at the deadline (handlers awaiting
    something, lifecycle hooks in progress). ``stopped`` counts actors that
    stopped in order (their ``on_stop`` ran), ``killed`` those terminated at
    the deadline; of these, ``on_stop_skipped`` had an ``on_stop`` that never
    began, and ``skipped`` names the first of them (at most 100).
    """

    drained: bool
    undelivered: int
    cancelled: int
    seconds: float
    stopped: int = 0
    killed: int = 0
    on_stop_skipped: int = 0
    skipped: tuple[str, ...] = ()


#: Names a ShutdownReport keeps of actors whose on_stop was skipped.
SKIPPED_NAMES = 100
#: Idle actors stopped in a row before shutdown lets the loop run and checks its deadline.
STOP_BATCH = 1024


def _not_started(cell: CellState) -> None:
    raise SystemClosed("the actor system is not started; use 'async with ActorSystem()'")


class ActorSystem:
    """The home of a set of actors on one asyncio event loop.

    >>> import asyncio
    >>> from troupe import Actor, ActorSystem
    >>> class Echo(Actor):
    ...     def receive(self, message):
    ...         return message
    >>> async def main():
    ...     async with ActorSystem("demo") as system:
    ...         echo = system.spawn(Echo, name="echo")
    ...         return await echo.ask("hi")
    >>> asyncio.run(main())
    'hi'

    For sync programs, :class:`~troupe.SyncActorSystem` runs one on a background thread.

    Observability: ``metrics`` (on by default) counts messages, handler time,
    restarts and dead letters per actor group (:mod:`troupe.metrics`);
    ``metrics_port`` serves them at ``http://<metrics_addr>:<port>/metrics``
    (``metrics_addr`` defaults to 127.0.0.1; port 0 picks a free one, see
    ``metrics_endpoint.url``). ``tracing=True`` starts a W3C trace for every
    message sent from outside a traced handler (:mod:`troupe.tracing`).

    ``restart`` (a :class:`~troupe.RestartPolicy`) is how actors that no
    supervisor handles are restarted: backoff between restarts, and stopped
    past ``max_restarts`` within ``within`` seconds.

    ``middleware`` is an ordered chain of :class:`~troupe.Middleware` (hooks
    around handling, asks, publishes, deliveries and saga steps; see
    :mod:`troupe.middleware`). ``handler_hook`` wraps every actor's handler
    (see :mod:`troupe.hooks`), innermost in the chain; :mod:`troupe.testing`
    uses it to trace and inject faults.
    """

    def __init__(
        self,
        name: str = "troupe",
        *,
        clock: Clock | Callable[[asyncio.AbstractEventLoop], Clock] | None = None,
        mailbox: MailboxConfig | Mapping[str, Any] | None = None,
        throughput: int = DEFAULT_THROUGHPUT,
        throughput_deadline: float | None = DEFAULT_THROUGHPUT_DEADLINE,
        slow_handler_warning: float | None = 0.1,
        loop_lag_interval: float | None = 0.05,
        ask_timeout: float | None = 5.0,
        shutdown_timeout: float = 10.0,
        metrics: bool = True,
        metrics_port: int | None = None,
        metrics_addr: str = "127.0.0.1",
        tracing: bool = False,
        restart: RestartPolicy | None = None,
        handler_hook: HandlerHook | None = None,
        middleware: Sequence[Middleware] = (),
    ) -> None:
        require_int("throughput", throughput, 1)
        self.throughput_deadline = check_seconds("throughput_deadline", throughput_deadline)
        slow_warning = check_seconds("slow_handler_warning", slow_handler_warning)
        self.slow_handlers = SlowHandlers(slow_warning)
        self._lag_interval = check_seconds("loop_lag_interval", loop_lag_interval)
        self.segment_bound = self.slow_handlers.threshold  # see troupe.dispatch
        self.loop_lag: LoopLagMonitor | None = None  # made by start()
        self._thread_intake: ThreadIntake | None = None
        #: What ``ActorRef.tell`` returns when the message went straight in: a done future of
        #: the system's loop (awaiting it costs less than awaiting ``Accepted``); set by start().
        self.accepted: asyncio.Future[None]
        #: Queues a sync actor's turn (``RunQueue.add``, see troupe.run_queue); set by start().
        self.enqueue: Callable[[CellState], None] = _not_started
        checked_shutdown = check_timeout("shutdown_timeout", shutdown_timeout, zero=True)
        if checked_shutdown is None:
            raise ConfigError("shutdown_timeout", "must be zero or a positive number of seconds")
        self.name = name
        self.default_mailbox = MailboxConfig() if mailbox is None else MailboxConfig.coerce(mailbox)
        self.throughput = throughput
        self.ask_timeout = check_timeout("ask_timeout", ask_timeout)
        self.shutdown_timeout = checked_shutdown
        self.dead_letters = DeadLetters()
        if restart is not None and not isinstance(restart, RestartPolicy):
            raise ConfigError("restart", f"must be a RestartPolicy, got {restart!r}")
        self.restart_policy = restart or RestartPolicy()
        self.dropped = 0
        self.failures = 0
        self.restarts = 0
        self.stopped_by_policy = 0  # actors stopped past their restart intensity
        self._restart_windows: dict[CellState, RestartTracker] = {}
        self._clock_spec = clock
        self._cells: dict[str, ActorCell] = {}
        self._ids = itertools.count(1)
        self._loop: asyncio.AbstractEventLoop | None = None
        self._clock: Clock | None = None
        self._ask_deadlines: AskDeadlines | None = None
        self.thread_id = -1
        self._closing = False
        self._closed = False
        self.on_stop_begun: set[CellState] | None = None  # during shutdown (troupe.stopping)
        self.failure: BaseException | None = None
        self._failing: asyncio.Task[ShutdownReport] | None = None
        self._failure_listeners: list[Callable[[Child, BaseException], Any]] = []
        self._metrics_on = metrics or metrics_port is not None
        self._metrics_listen = (metrics_port, metrics_addr)
        self.metrics: SystemMetrics | None = None
        self.metrics_endpoint: MetricsEndpoint | None = None  # when serving /metrics
        self.tracing = tracing
        self.handler_hook = handler_hook  # troupe.hooks: wraps each handler (testing, tracing)
        #: Asks to an idle sync actor run in the asker's task (``ActorRef.ask``); off in
        #: simulations, whose seeded scheduler explores every interleaving of turns.
        self.inline_asks = True
        self.inline_left = INLINE_RUN  # inline asks left before one goes through the loop
        self._own_middleware = tuple(middleware)
        self.middleware = self._chain()

    def _chain(self) -> MiddlewareChain:
        hook = self.handler_hook
        extra = () if hook is None else (HandlerHookMiddleware(hook),)
        chain = MiddlewareChain((*self._own_middleware, *extra))
        self.ask_hooks = bool(chain.before_ask or chain.after_ask)  # tested by ActorRef.ask
        return chain

    # -- lifecycle ----------------------------------------------------------------------

    async def __aenter__(self) -> ActorSystem:
        self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.shutdown()
        if exc is None and self.failure is not None:
            raise self.failure

    def start(self) -> None:
        """Bind the system to the running event loop (``async with`` does this)."""
        if self._loop is not None:
            return
        self._loop = asyncio.get_running_loop()
        self.accepted = self._loop.create_future()
        self.accepted.set_result(None)
        self.thread_id = threading.get_ident()
        self._thread_intake = ThreadIntake(self._loop)
        if self.handler_hook is None:  # a simulated loop brings its own (troupe.testing)
            self.handler_hook = getattr(self._loop, "troupe_handler_hook", None)
            if self.handler_hook is not None:
                self.middleware = self._chain()
        if getattr(self._loop, "troupe_deterministic", False):
            self.throughput_deadline = float("inf")  # a simulation's turns: by count, not time
            self.inline_asks = False
            self.enqueue = DirectQueue(self._loop).add  # its scheduler orders every turn
        else:
            self.enqueue = RunQueue(self._loop).add
        spec = self._clock_spec
        if spec is None:
            self._clock = RealClock(self._loop)
        elif callable(spec) and not hasattr(spec, "now"):
            self._clock = spec(self._loop)
        else:
            self._clock = spec  # type: ignore[assignment]
        self._start_observability()
        if self._lag_interval != float("inf"):
            metrics = self.metrics
            self.loop_lag = LoopLagMonitor(
                self._loop,
                self._lag_interval,
                self.slow_handlers,
                metrics.loop_lag if metrics is not None else None,
            )
            self.loop_lag.start()

    def _start_observability(self) -> None:
        if self.tracing:
            from .tracing import enable

            enable()
        if not self._metrics_on:
            return
        port, addr = self._metrics_listen
        if port is not None and (
            isinstance(port, bool) or not isinstance(port, int) or not 0 <= port <= 65535
        ):
            raise ConfigError(
                "metrics_port", f"must be a TCP port 0..65535 (0: any free), got {port!r}"
            )
        self.metrics = SystemMetrics(self)
        self.segment_bound = min(self.segment_bound, FAST_BOUND)
        if self.metrics.file_backed:
            self.metrics.start_sampler(self.loop)
        if port is None:
            return
        from .metrics.export import MetricsEndpoint

        try:
            self.metrics_endpoint = MetricsEndpoint(port, addr)
        except (OSError, OverflowError, ValueError) as exc:
            self.metrics.close()
            self.metrics = None
            why = getattr(exc, "strerror", None) or exc
            # one line naming the port: the socket error's chain adds nothing
            raise ConfigError(
                "metrics_port", f"cannot serve /metrics on {addr}:{port}: {why}"
            ) from None
        self.metrics_endpoint.add_system(self.metrics)
        from .observer import Observer, SystemSource

        # read-only: /observer, /observer.json, /healthz, /readyz beside /metrics
        Observer(SystemSource([self])).mount(self.metrics_endpoint.server)

    @property
    def loop(self) -> asyncio.AbstractEventLoop:
        """The event loop the actors run on."""
        if self._loop is None:
            raise SystemClosed(
                f"actor system {self.name!r} is not started; use 'async with ActorSystem()'"
            )
        return self._loop

    @property
    def thread_intake(self) -> ThreadIntake:
        """Where other threads hand work to the loop (see :mod:`troupe.thread_intake`)."""
        if self._thread_intake is None:
            raise SystemClosed(f"actor system {self.name!r} is not started")
        return self._thread_intake

    @property
    def clock(self) -> Clock:
        """The system's clock (real, or virtual in simulations)."""
        if self._clock is None:
            raise SystemClosed(f"actor system {self.name!r} is not started")
        return self._clock

    @property
    def ask_deadlines(self) -> AskDeadlines:
        """Expires pending asks on the system's clock."""
        if self._ask_deadlines is None:
            self._ask_deadlines = AskDeadlines(self.clock)
        return self._ask_deadlines

    @property
    def is_closing(self) -> bool:
        """True once shutdown has begun: bridges stop taking in new work."""
        return self._closing or self._closed

    @property
    def is_running(self) -> bool:
        return self._loop is not None and not self._closed

    # -- actors -------------------------------------------------------------------------

    def spawn(
        self,
        factory: ActorFactory | Props,
        *args: Any,
        name: str | None = None,
        mailbox: MailboxConfig | Mapping[str, Any] | None = None,
        metrics_label: str | None = None,
        **kwargs: Any,
    ) -> ActorRef:
        """Create an actor from a class (or a factory returning an Actor) and start it.

        ``spawn(Cls, *args, **kwargs)`` is short for ``spawn(Props(Cls, *args,
        **kwargs))``; use :class:`~troupe.Props` when the constructor takes a
        parameter called ``name``, ``mailbox`` or ``metrics_label``. ``name`` must
        be unique among live actors; without one a name is made from the class
        name. The constructor arguments are used again at every restart.
        ``mailbox`` (a MailboxConfig or a mapping of its fields) overrides the
        class's ``mailbox``. ``metrics_label`` names the actor's metrics group
        (default: the class's ``metrics_label``, else ``name``, else the class
        name; see :mod:`troupe.metrics`).
        """
        props = Props.of(factory, args, kwargs)
        return self._spawn(props, name, mailbox, metrics_label, None)

    def _spawn(
        self,
        props: Props,
        name: str | None,
        mailbox: MailboxConfig | Mapping[str, Any] | None,
        metrics_label: str | None,
        parent: ActorCell | None,
    ) -> ActorRef:
        """``spawn`` under ``parent`` (``Actor.spawn`` starts children through here)."""
        if self._closed or self._closing:
            raise SystemClosed(f"actor system {self.name!r} is shutting down; cannot spawn")
        self.loop  # noqa: B018 - raises SystemClosed when the system is not started
        factory = props.factory
        named = name is not None
        if name is None:
            name = f"{props.label}-{next(self._ids)}"
        elif type(name) is not str or not name:
            raise ConfigError("name", f"must be a non-empty string, got {name!r}")
        elif name in self._cells:
            raise NameTaken(name)
        if metrics_label is not None and (type(metrics_label) is not str or not metrics_label):
            raise ConfigError("metrics_label", f"must be a non-empty string, got {metrics_label!r}")
        config = _mailbox_of(factory, mailbox, self.default_mailbox)
        throughput = getattr(factory, "throughput", None)
        if throughput is None:
            throughput = self.throughput
        elif type(throughput) is not int or throughput < 1:
            owner = getattr(factory, "__name__", repr(factory))
            raise ConfigError(
                "throughput",
                f"{owner}.throughput must be a positive int (or None), got {throughput!r}",
            )
        deadline = getattr(factory, "throughput_deadline", None)
        if deadline is None:
            deadline = self.throughput_deadline
        else:
            try:
                deadline = check_seconds("throughput_deadline", deadline)
            except ConfigError as exc:
                owner = getattr(factory, "__name__", repr(factory))
                raise ConfigError(
                    exc.setting, f"{owner}.throughput_deadline {exc.problem}"
                ) from None
        cell = ActorCell(
            self, name, factory, props.args, props.kwargs, parent, config, throughput, deadline
        )
        if self.metrics is not None:
            cell.metrics = self.metrics.stats_for(
                name, factory, named=named, explicit=metrics_label
            )
        self._cells[name] = cell
        if parent is not None:
            if parent.children is None:
                parent.children = {}
            parent.children[name] = cell
        cell.start()
        return cell.ref

    def adopt(self, pykka_ref: Any, *, name: str | None = None) -> ActorRef:
        """Put an existing pykka actor behind a troupe ref (see AdoptedPykkaActor)."""
        from .threaded import AdoptedPykkaActor

        return self.spawn(AdoptedPykkaActor, pykka_ref, name=name)

    def lookup(self, name: str) -> ActorRef:
        """The ref of the live actor called ``name``; raises ActorNotFound."""
        cell = self._cells.get(name)
        if cell is None:
            raise ActorNotFound(name)
        return cell.ref

    def find(self, name: str) -> ActorRef | None:
        """The ref of the live actor called ``name``, or None."""
        cell = self._cells.get(name)
        return cell.ref if cell is not None else None

    def actors(self) -> list[ActorRef]:
        """Refs of every live actor, in spawn order."""
        return [cell.ref for cell in self._cells.values()]

    async def stop(self, ref: ActorRef) -> None:
        """Stop one actor (and its children) and wait until it has stopped."""
        await ref.stop()

    def watch(self, ref: ActorRef, callback: Callable[[Terminated], Any]) -> None:
        """Call ``callback(Terminated(ref, reason))`` once the actor stops (at once if it has)."""
        ref._cell.add_watcher(callback)

    def unwatch(self, ref: ActorRef, callback: Callable[[Terminated], Any]) -> None:
        """Stop calling ``callback`` when the actor stops."""
        ref._cell.remove_watcher(callback)

    def top_level(self) -> list[Child]:
        """Handles on the live actors without a parent, in spawn order."""
        return [Child(cell) for cell in self._cells.values() if cell.parent is None]

    def cell_of(self, ref: ActorRef) -> ActorCell:
        """The runtime's internal cell behind a ref. Internal: other packages use
        :class:`~troupe.Child` (``Child.of(ref)``) and the ref's public API."""
        return ref._cell

    def cells(self) -> list[ActorCell]:
        """Every live cell (a copy; safe to call from another thread, e.g. a scrape)."""
        return list(self._cells.values())

    # -- events from cells --------------------------------------------------------------

    def unregister(self, cell: CellState) -> None:
        if self._cells.get(cell.name) is cell:
            del self._cells[cell.name]
        if self._restart_windows:
            self._restart_windows.pop(cell, None)

    def note_dropped(self, cell: CellState, message: Any) -> None:
        self.dropped += 1
        if cell.metrics is not None:
            cell.metrics.add(DROPPED)

    def note_failure(
        self, cell: CellState, exc: BaseException, message: Any, *, hook: str | None = None
    ) -> None:
        """Count and log a failure: of a handler on ``message``, or of the lifecycle
        ``hook`` (``on_start``/``on_restart``) when given. An exception whose
        ``log_traceback`` attribute is False (a bridge's lost connection: its message
        names the actor's broker and the cause) is logged only by the restart or stop
        decision that follows, as one line."""
        self.failures += 1
        if hook is None and getattr(exc, "log_traceback", True) is False:
            logger.debug("actor %s failed on %r: %s", cell.name, message, exc)
        elif hook is not None:
            logger.error(
                "actor %s failed in %s: %s: %s",
                cell.name,
                hook,
                type(exc).__name__,
                exc,
                exc_info=exc,
            )
        else:
            logger.error(
                "actor %s failed on %r: %s: %s",
                cell.name,
                message,
                type(exc).__name__,
                exc,
                exc_info=exc,
            )
        if self._failure_listeners:
            child = Child.of(cell.ref)
            for listener in tuple(self._failure_listeners):
                try:
                    listener(child, exc)
                except Exception:
                    logger.exception("failure listener %r failed", listener)

    def add_failure_listener(
        self, listener: Callable[[Child, BaseException], Any]
    ) -> Callable[[], None]:
        """Call ``listener(child, exc)`` whenever an actor fails; returns an unsubscribe."""
        self._failure_listeners.append(listener)

        def unsubscribe() -> None:
            if listener in self._failure_listeners:
                self._failure_listeners.remove(listener)

        return unsubscribe

    def fail(self, exc: BaseException) -> None:
        """Stop the whole system because ``exc`` was not handled (a root supervisor gave up).

        ``failure`` keeps the first such error and ``async with`` raises it on exit,
        so a program (or the CLI) ends with that error and a non-zero status.
        """
        if self.failure is None:
            self.failure = exc
        logger.critical("actor system %s is stopping: %s", self.name, exc)
        if self._failing is None and not self._closed and not self._closing:
            self._failing = self.loop.create_task(self.shutdown())

    def note_restart(self, cell: CellState) -> None:
        self.restarts += 1
        if cell.metrics is not None:
            cell.metrics.add(RESTARTS)

    def apply_restart_policy(self, child: Child, exc: BaseException) -> None:
        """What happens to a failed actor that no supervisor handles (a top-level actor,
        or the child of an actor that keeps the default ``on_child_failure``).

        After a failed ``on_start`` it is stopped (it never ran; a restart would only
        repeat it). Otherwise its :class:`RestartPolicy` — the actor's
        ``restart_policy``, else the system's ``restart`` — applies the rule of
        :meth:`RestartTracker.record_failure`: at once after a good run or within the
        first ``max_restarts`` failures in a row, after a backoff delay in a crash
        loop, and past that it is stopped, with an ERROR log, counted in
        ``stopped_by_policy``.
        """
        cell = child._cell
        if cell.failed_in_start and cell.restarts == 0:  # on_start, not on_restart
            logger.error("actor %s failed to start (%r); stopping it", cell.name, exc)
            cell.request_stop(exc)
            return
        policy = type(cell.actor).restart_policy or self.restart_policy
        tracker = self._restart_windows.get(cell)
        if tracker is None:
            tracker = self._restart_windows[cell] = policy.window()
        delay = tracker.record_failure(
            cell.name,
            self.clock.now(),
            ran_well=cell.failed_after_success,
            lifecycle=cell.failed_in_start,
            answered=cell.failure_answered,
        )
        if delay is None:
            self.stopped_by_policy += 1
            logger.error(
                "actor %s failed %d times in a row, the last %d after backoff (%s: %s); "
                "stopping it",
                cell.name,
                tracker.failures_in_row(cell.name),
                policy.max_restarts,
                type(exc).__name__,
                exc,
            )
            cell.request_stop(exc)
            return
        if delay > 0:
            logger.warning(
                "actor %s is in a crash loop (%d failures in a row); restarts in %.3f s after "
                "%s: %s",
                cell.name,
                tracker.failures_in_row(cell.name),
                delay,
                type(exc).__name__,
                exc,
            )
        cell.restart(delay)

    # -- shutdown -----------------------------------------------------------------------

    async def shutdown(self, timeout: float | None = None) -> ShutdownReport:
        """Drain mailboxes for up to ``timeout`` seconds, then stop every actor.

        Timers stop first, so no new self-messages appear. Actors keep handling
        what is queued (and what they send each other) until every mailbox is
        empty (an actor waiting out a restart backoff is not waited for) or the
        deadline passes; then top-level actors stop one after another
        in reverse spawn order, each children-first (as a supervisor stops its
        children), within what is left of the deadline. An idle actor without
        children or an ``async def`` ``on_stop`` stops at once (no task): a
        million of them take seconds. Past the deadline the rest are killed
        (no ``on_stop``) and their tasks cancelled; the report counts exactly
        what stopped, what was killed, which ``on_stop`` did not run and what
        was cancelled. Messages still queued go to dead letters, counted too.
        """
        failing = self._failing
        if failing is not None and failing is not asyncio.current_task():
            return await asyncio.shield(failing)
        if self._closed or self._loop is None:
            return ShutdownReport(True, 0, 0, 0.0)
        self._closing = True
        timeout = self.shutdown_timeout if timeout is None else timeout
        began = time.monotonic()
        deadline = began + timeout
        for cell in self._cells.values():
            if cell._timers is not None:
                cell._timers.cancel_all()
        drained = await self._wait_idle(deadline, draining=True)
        letters_before = self.dead_letters.by_reason[RECIPIENT_STOPPED]
        self.on_stop_begun = set()
        total = len(self._cells)
        in_time = await self._stop_in_order(deadline)
        killed = cancelled = skipped = 0
        names: list[str] = []
        if not in_time:
            killed, cancelled, skipped = await self._force_stop(names)
            logger.warning(
                "actor system %s: shutdown deadline (%g s) passed; killed %d actors, "
                "cancelled %d tasks, on_stop did not run for %d%s",
                self.name,
                timeout,
                killed,
                cancelled,
                skipped,
                f" ({', '.join(names[:10])}{', ...' if skipped > 10 else ''})" if names else "",
            )
        self.on_stop_begun = None
        undelivered = self.dead_letters.by_reason[RECIPIENT_STOPPED] - letters_before
        if self._ask_deadlines is not None:
            self._ask_deadlines.cancel()
        self._closed = True
        self._stop_observability()
        self._cells = {}  # a dict keeps its size after deletes: release the table
        self._restart_windows = {}
        return ShutdownReport(
            drained,
            undelivered,
            cancelled,
            time.monotonic() - began,
            stopped=total - killed,
            killed=killed,
            on_stop_skipped=skipped,
            skipped=tuple(names),
        )

    async def _stop_in_order(self, deadline: float) -> bool:
        """Stop top-level actors in reverse spawn order; False once the deadline passed."""
        top_level = [cell for cell in self._cells.values() if cell.parent is None]
        batch = 0
        for cell in reversed(top_level):
            if cell.state is State.STOPPED:
                continue
            if cell.stop_idle():
                batch += 1
                if batch >= STOP_BATCH:
                    batch = 0
                    await asyncio.sleep(0)
                    if time.monotonic() >= deadline:
                        return False
                if cell.is_terminated:
                    continue
            if time.monotonic() >= deadline:
                return False
            stopped = cell.request_stop()
            if stopped.done():
                continue
            remaining = deadline - time.monotonic()
            _done, pending = await asyncio.wait({stopped}, timeout=max(remaining, 0.0))
            if pending:
                return False
        return True

    def _stop_observability(self) -> None:
        if self.loop_lag is not None:
            self.loop_lag.stop()
        if self.metrics_endpoint is not None:
            self.metrics_endpoint.close()
            self.metrics_endpoint = None
        if self.metrics is not None:
            self.metrics.close()

    async def wait_idle(self, timeout: float | None = None) -> bool:
        """Wait until every mailbox is empty and no actor is busy; False on timeout."""
        deadline = time.monotonic() + (self.shutdown_timeout if timeout is None else timeout)
        return await self._wait_idle(deadline)

    async def _wait_idle(self, deadline: float, *, draining: bool = False) -> bool:
        # One pass over every actor finds the busy ones; only those are polled until
        # they are idle, then every actor is looked at again (they may have sent
        # messages): with a million idle actors a poll costs nothing.
        delay = 0.0005
        while True:
            busy = [cell for cell in self._cells.values() if not cell.is_idle(draining=draining)]
            if not busy:
                return True
            while busy:
                if time.monotonic() >= deadline:
                    return False
                await asyncio.sleep(delay)
                delay = min(delay * 2, 0.02)
                busy = [cell for cell in busy if not cell.is_idle(draining=draining)]

    async def _force_stop(self, names: list[str]) -> tuple[int, int, int]:
        """Kill every actor still alive (children first, the last spawned first): cancel
        their tasks, skip ``on_stop``. Returns (killed, cancelled tasks, on_stop skipped)
        and puts the first names of the skipped in ``names``."""
        begun = self.on_stop_begun or set()
        alive = [cell for cell in self._cells.values() if cell.state is not State.STOPPED]
        cancelled: list[asyncio.Task[Any]] = []
        skipped = 0
        for cell in alive:
            for task in cell.live_tasks():
                if task.cancel():
                    cancelled.append(task)
            if cell.has_on_stop() and cell not in begun:
                skipped += 1
                if len(names) < SKIPPED_NAMES:
                    names.append(cell.name)
        # Terminated before the cancelled tasks unwind, so nothing schedules new turns.
        for cell in reversed(alive):
            if cell.state is not State.STOPPED:
                cell._terminate(None)
        if cancelled:
            await asyncio.wait(cancelled, timeout=1.0)
        return len(alive), len(cancelled), skipped


def _mailbox_of(
    factory: Any, given: MailboxConfig | Mapping[str, Any] | None, default: MailboxConfig
) -> MailboxConfig:
    """The mailbox a spawn uses: ``given``, else the class's ``mailbox``, else the default;
    a mapping is turned into a MailboxConfig, anything else raises ConfigError("mailbox")."""
    if given is not None:
        return given if type(given) is MailboxConfig else MailboxConfig.coerce(given)
    declared = getattr(factory, "mailbox", None)
    if declared is None:
        return default
    if type(declared) is MailboxConfig:
        return declared
    try:
        return MailboxConfig.coerce(declared)
    except ConfigError as exc:
        owner = getattr(factory, "__name__", repr(factory))
        raise ConfigError(exc.setting, f"{owner}.mailbox {exc.problem}") from None
