"""``CellState``: what an actor cell holds, and what its parts call on one another.

:class:`~troupe.cell.ActorCell` is made of parts, one mixin class per concept
(as Akka's ActorCell is made of its Dispatch, DeathWatch, Children and
FaultHandling traits): :class:`~troupe.intake.Intake`,
:class:`~troupe.dispatch.Dispatch`, :class:`~troupe.lifecycle.Lifecycle`,
:class:`~troupe.stopping.Stopping` and :class:`~troupe.watch.DeathWatch`. Each
part derives from ``CellState``, which owns the cell's slots with their types,
and declares, for the type checker only, the methods the parts call on one
another (implemented by a part or by ``ActorCell``): so each part type-checks
on its own, and each implementation is checked against its declaration.

Not a ``typing.Protocol``: as the parts' base it would be in the cell's run-time
MRO (typing's metaclass makes ``isinstance`` on a miss ~30x slower), and
whether it is their base or their ``self`` type, mypy takes an attribute a part
assigns (``self._current = None``) as a new attribute of that part, clashing
with ``ActorCell``'s. A plain slotted base costs nothing at run time.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import asyncio
    from collections.abc import Awaitable, Callable

    from .actor import Actor
    from .cell import ActorCell, ActorFactory
    from .clock import TimerHandle
    from .delivery import Queued
    from .envelope import Envelope
    from .mailbox import Mailbox
    from .metrics import ActorStats
    from .page_run import PageRun
    from .ref import ActorRef
    from .state import State, Terminated
    from .system import ActorSystem
    from .timers import Timers


class CellState:
    """The slots of an actor cell, and the methods its parts use of one another."""

    __slots__ = (
        "_backoff",
        "_current",
        "_deadline",
        "_each",
        "_enqueue",
        "_instance_args",
        "_is_async",
        "_lifecycle",
        "_loop",
        "_ran_well",
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
        "failed_after_success",
        "failed_in_start",
        "failure",
        "failure_answered",
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

    # -- what it is and where it runs
    system: ActorSystem
    name: str
    ref: ActorRef
    parent: ActorCell | None
    children: dict[str, ActorCell] | None
    factory: ActorFactory
    _instance_args: tuple[tuple[Any, ...], dict[str, Any]]
    actor: Actor
    mailbox: Mailbox
    metrics: ActorStats | None  # the system sets it when metrics are on
    state: State
    _loop: asyncio.AbstractEventLoop
    _thread_id: int
    _timers: Timers | None

    # -- turns (Dispatch)
    _receive: Callable[[Any], Any]  # the handler, wrapped by middleware
    _is_async: bool
    _throughput: int  # messages a turn may handle
    _deadline: float  # seconds a turn may run
    _each: bool  # time each message
    _scheduled: bool  # a turn is scheduled or running
    _enqueue: Callable[[CellState], None]  # the system's run queue (troupe.run_queue)
    _current: Envelope | PageRun | None  # the message being handled, in its envelope or page
    _taken: list[Queued] | None  # see take_queued
    _task: asyncio.Task[Any] | None  # an async actor's turn

    # -- failures and restarts (Lifecycle)
    failure: BaseException | None
    failed_in_start: bool
    _ran_well: bool  # a message handled successfully since the last failure
    failed_after_success: bool  # the pending failure ended a good run
    failure_answered: bool  # the pending failure was an ask's or a retry's
    restarts: int
    _lifecycle: asyncio.Task[Any] | None  # on_start, a restart or a stop under way
    _backoff: TimerHandle | None  # a restart waiting out its delay

    # -- the end (Stopping, DeathWatch)
    shutdown_timeout: float | None  # the parent kills it past this stop deadline
    _stopped: asyncio.Future[None] | None
    watchers: list[Callable[[Terminated], Any]] | None

    if TYPE_CHECKING:
        # Declared for the parts that call them; implemented where the comment says (a
        # declaration nothing implements goes unnoticed by mypy: the first call fails).

        # -- ActorCell
        def _new_instance(self) -> Actor: ...
        def _bind(self, actor: Actor) -> None: ...

        # -- Intake
        def send_system(self, action: Callable[[], Any]) -> None: ...
        def _undeliverable(self, item: Any, reason: str) -> None: ...

        # -- Dispatch
        def _schedule(self) -> None: ...
        def _drain_sync(self) -> None: ...

        # -- Lifecycle
        def _run_lifecycle(self, coro: Awaitable[None]) -> None: ...
        async def _call_hook(self, hook: str, *args: Any) -> None: ...
        def _failed(
            self,
            exc: BaseException,
            message: Any,
            *,
            in_start: str | None = None,
            answered: bool = False,
        ) -> None: ...

        # -- Stopping
        async def _stop_children(self, reason: BaseException | None) -> None: ...

        # -- DeathWatch
        def _notify_watchers(self, reason: BaseException | None) -> None: ...
