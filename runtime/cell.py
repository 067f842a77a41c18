"""``ActorCell``: the runtime side of one actor — its instance, mailbox and place in the tree.

A cell is composed of parts, one mixin class per concept, as Akka's ActorCell is
composed of its Dispatch, DeathWatch, Children and FaultHandling traits::

    class ActorCell(Intake, Dispatch, Lifecycle, Stopping, DeathWatch)

- :class:`~troupe.intake.Intake`: messages entering the mailbox;
- :class:`~troupe.dispatch.Dispatch`: handling them in bounded turns;
- :class:`~troupe.lifecycle.Lifecycle`: start, failure, resume, restart;
- :class:`~troupe.stopping.Stopping`: stop, kill, the end;
- :class:`~troupe.watch.DeathWatch`: callbacks told when it stops.

Every part derives from :class:`~troupe.cell_state.CellState`, which owns the
cell's slots (``__slots__``, with their types) and declares the methods the
parts call on one another; the parts add no slots. ``ActorCell`` itself builds
the actor instance and answers what a handler sees of the message being
handled. Code outside the core uses :class:`~troupe.ActorRef`,
:class:`~troupe.Child` and ``Actor``'s API, never a cell.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from types import FrameType
from typing import TYPE_CHECKING, Any

from .actor import SYSTEM_ASK_TIMEOUT, Actor, is_async_callable
from .dispatch import Dispatch
from .errors import ConfigError, MailboxFull, check_timeout
from .intake import Intake
from .lifecycle import Lifecycle
from .mailbox import Mailbox, MailboxConfig
from .ref import ActorRef
from .restart import RestartPolicy
from .state import State, Terminated
from .stopping import Stopping
from .timers import Timers
from .watch import DeathWatch

if TYPE_CHECKING:
    from .system import ActorSystem

ActorFactory = Callable[..., "Actor"]

_STOPPING = State.STOPPING


class ActorCell(Intake, Dispatch, Lifecycle, Stopping, DeathWatch):
    """Owns one actor instance, its mailbox and its place in the tree; made of the
    parts it derives from (see the module's docstring)."""

    __slots__ = ()  # the slots are CellState's

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
        deadline: float = float("inf"),
    ) -> None:
        self.system = system
        self.name = name
        self.factory = factory
        self._instance_args = (args, kwargs)
        self.parent = parent
        self.ref = ActorRef(self)
        self.mailbox = Mailbox(mailbox, self._overflowed)
        self._throughput = throughput
        self._deadline = deadline
        self._each = False
        self._loop = system.loop
        self._thread_id = system.thread_id
        self._scheduled = False
        self._enqueue = system.enqueue
        self._current = None
        self._taken = None
        self._backoff = None
        self._timers = None
        self._stopped = None
        self._task = None
        self._lifecycle = None
        self.children = None
        self.watchers = None
        self.restarts = 0
        self.metrics = None
        self.shutdown_timeout = None
        self.failure = None
        self.failed_in_start = False
        self._ran_well = False
        self.failed_after_success = False
        self.failure_answered = False
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
        own_timeout = self.actor.ask_timeout
        if own_timeout is not SYSTEM_ASK_TIMEOUT and own_timeout is not None:
            check_timeout("ask_timeout", own_timeout)

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
        chain = self.system.middleware  # see troupe.middleware (handler_hook is one)
        if chain:
            self._receive = chain.wrap(actor, self._receive)
        self._is_async = is_async_callable(self._receive)

    @property
    def timers(self) -> Timers:
        if self._timers is None:
            self._timers = Timers(self)
        return self._timers

    @property
    def is_terminated(self) -> bool:
        return self.state is State.STOPPED

    def mailbox_room(self) -> int:
        """Messages the user lane takes before its overflow policy applies (0 once stopping)."""
        if self.state >= _STOPPING:
            return 0
        mailbox = self.mailbox
        return max(0, mailbox.capacity - len(mailbox) - mailbox.waiting)

    def is_idle(self, *, draining: bool = False) -> bool:
        """True when nothing is queued, scheduled or in a lifecycle step. ``draining``
        (shutdown): an actor waiting out a restart backoff counts as idle — its queued
        messages wait for no one and go to dead letters when it stops."""
        in_hook = self._lifecycle is not None and not self._lifecycle.done()
        mailbox = self.mailbox
        if draining and self._backoff is not None:
            return not (self._scheduled or in_hook or mailbox.system)
        return not (
            self._scheduled
            or in_hook
            or len(mailbox)
            or mailbox.system
            or mailbox.waiting
            or self.state is State.SUSPENDED
        )

    def __repr__(self) -> str:
        return f"<ActorCell {self.name} {self.state.name}>"

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
    def reply_expected(self) -> bool:
        current = self._current
        return current is not None and current.reply is not None


def current_actor(max_depth: int = 40, frame: FrameType | None = None) -> str | None:
    """The name of the actor whose handler or lifecycle hook is running on this thread's
    stack, or None. Walks the stack for the innermost method call whose ``self`` is an
    :class:`ActorCell` (whatever module defines that method), so it costs nothing until
    called (e.g. by a log filter that labels records with the actor). ``frame``: walk
    another thread's stack from this frame instead (one of ``sys._current_frames()``,
    see troupe.loop_watch)."""
    if frame is None:
        frame = sys._getframe(1)
    for _ in range(max_depth):
        if frame is None:
            return None
        code = frame.f_code
        if code.co_argcount and code.co_varnames[0] == "self":  # a method: look at self
            owner = frame.f_locals.get("self")
            if isinstance(owner, ActorCell):
                name: str | None = getattr(owner, "name", None)  # None: a cell in the making
                if name is not None:
                    return name
        frame = frame.f_back
    return None


__all__ = ["ActorCell", "ActorFactory", "MailboxFull", "State", "Terminated", "current_actor"]
