"""The ``Actor`` base class that user actors subclass."""

from __future__ import annotations

import inspect
from collections.abc import Awaitable, Callable, Mapping
from threading import get_ident
from typing import TYPE_CHECKING, Any, ClassVar

from .mailbox import MailboxConfig

#: ``Actor.ask_timeout`` unset: asks use the system's ``ask_timeout``.
SYSTEM_ASK_TIMEOUT: Any = object()

if TYPE_CHECKING:
    from .cell import ActorCell
    from .child import Child
    from .delivery import Queued
    from .ref import ActorRef
    from .restart import RestartPolicy
    from .system import ActorSystem
    from .timers import Timers


class Actor:
    """An actor: private state in plain attributes, one message handled at a time.

    Subclass it and define ``receive`` as ``def`` or ``async def``; what it
    returns is the reply to an ``ask``, what it raises fails the actor (its
    supervisor decides what happens next) and is raised to the asker.

    >>> class Counter(Actor):
    ...     def __init__(self) -> None:
    ...         self.count = 0
    ...     def receive(self, message: object) -> int:
    ...         self.count += 1
    ...         return self.count

    Class attributes tune the runtime: ``mailbox`` (a :class:`MailboxConfig`),
    ``throughput`` (messages handled per turn before other actors run),
    ``throughput_deadline`` (seconds a turn may run before it yields; default:
    the system's), ``metrics_label`` (the ``actor`` label of its metrics; see :mod:`troupe.metrics`)
    and ``restart_policy`` (a :class:`RestartPolicy`: how it restarts when no
    supervisor handles its failures; default: the system's). ``ask_timeout``
    (seconds, ``None`` for no limit; a class or instance attribute) is the default
    ``timeout`` of asks to this actor, for one whose replies take as long as a
    setting of its own (a producer bridge: its ``delivery_timeout``); unset, asks
    use the system's ``ask_timeout``. ``message_type`` (a dataclass, Pydantic model
    or msgspec Struct; else the annotation of ``receive``'s parameter) is what a
    broker bridge in front of it decodes payloads into (:mod:`troupe.message_types`).
    """

    mailbox: ClassVar[MailboxConfig | None] = None
    throughput: ClassVar[int | None] = None
    throughput_deadline: ClassVar[float | None] = None
    metrics_label: ClassVar[str | None] = None
    restart_policy: ClassVar[RestartPolicy | None] = None
    ask_timeout: float | None = SYSTEM_ASK_TIMEOUT
    message_type: ClassVar[type | None] = None
    max_batch: ClassVar[int] = 100

    _troupe_cell: ActorCell

    def receive(self, message: Any) -> Any | Awaitable[Any]:
        """Handle one message. Override this."""
        raise NotImplementedError(f"{type(self).__name__} must define receive(message)")

    def receive_batch(self, batch: list[Queued]) -> Any | Awaitable[Any]:
        """Optional: handle a page of messages in one call (``def`` or ``async def``).

        An actor that defines it gets, instead of one ``receive`` per message, the
        message its turn reached plus those queued behind it (at most ``max_batch``,
        a class attribute, default 100) as :class:`~troupe.Queued` items: read
        ``item.message`` and ``item.headers`` (``self.headers`` is the first one's).
        Every message has started before the call (a broker bridge has journaled its
        attempt). An item settled with ``resolve``/``reject`` keeps that outcome; when
        it returns, the rest are handled (an asker gets ``None``); when it raises,
        the rest fail with the exception — the whole page, each message's attempt
        counted by a bridge — and the actor fails once. For asyncio actors (a
        ``ThreadActor`` uses ``receive``). See :mod:`troupe.batch`.
        """
        raise NotImplementedError(f"{type(self).__name__} does not define receive_batch")

    # -- lifecycle hooks (each may be ``def`` or ``async def``) --------------------------

    def on_start(self) -> Any:
        """Called once before the first message."""

    def on_stop(self) -> Any:
        """Called when the actor stops, and on the failed instance before a restart."""

    def on_restart(self, exc: BaseException) -> Any:
        """Called on the fresh instance after a restart caused by ``exc``; runs on_start."""
        return self.on_start()

    def on_child_failure(self, child: Child, exc: BaseException) -> None:
        """A child of this actor failed with ``exc`` and is suspended: decide its fate with
        ``child.restart(delay)``, ``child.resume()``, ``child.stop(exc)``, or pass it up
        with ``Child.of(self.ref).escalate(exc)``. Runs between this actor's messages.

        The default leaves it to the system's restart policy, as for a top-level
        actor (see :class:`~troupe.RestartPolicy`). Override it to supervise.
        """
        self.system.apply_restart_policy(child, exc)

    # -- context ---------------------------------------------------------------------

    @property
    def ref(self) -> ActorRef:
        """This actor's own reference."""
        try:
            return self._troupe_cell.ref
        except AttributeError:
            return self._cell().ref  # raises, saying why

    @property
    def system(self) -> ActorSystem:
        """The system this actor runs in."""
        return self._cell().system

    @property
    def name(self) -> str:
        """This actor's unique name."""
        return self._cell().name

    @property
    def timers(self) -> Timers:
        """Messages to self after a delay or periodically, on the system's clock."""
        return self._cell().timers

    @property
    def sender(self) -> ActorRef | None:
        """The sender of the message being handled, when it gave one."""
        return self._cell().current_sender

    @property
    def headers(self) -> dict[str, str]:
        """Headers of the message being handled (empty when it had none)."""
        return self._cell().current_headers

    @property
    def reply_expected(self) -> bool:
        """True while handling a message whose sender waits for the outcome
        (sent with ``ask`` or ``deliver``)."""
        return self._cell().reply_expected

    def take_queued(self, limit: int) -> list[Queued]:
        """Remove up to ``limit`` user messages queued behind the current one, oldest
        first, to handle them together with it (a batch).

        Settle each with ``resolve(result)`` or ``reject(exc)``: that replies to
        its sender and counts it in metrics as a handled message. Parked
        ``backpressure`` senders are admitted as room is made. Loop thread only.
        """
        cell = self._cell()
        if get_ident() != cell._thread_id:
            raise RuntimeError(
                f"take_queued() in {cell.name!r} must run on the system's loop thread"
            )
        return cell.take_queued(limit)

    def take_current(self) -> Queued | None:
        """The message being handled as a :class:`~troupe.Queued` when its sender waits
        for the outcome (``ask`` or ``deliver``); None when it does not.

        For a batching actor that reports each message's outcome itself: settle it
        with ``resolve(result)`` or ``reject(exc)`` and return normally, so a failure
        reaches this sender without failing the actor. Once settled, the handler's
        return value no longer replies. Counted in metrics once, by the turn (as
        handled). Loop thread only.
        """
        cell = self._cell()
        if get_ident() != cell._thread_id:
            raise RuntimeError(
                f"take_current() in {cell.name!r} must run on the system's loop thread"
            )
        current = cell._current
        if current is None or current.reply is None:
            return None
        from . import delivery  # not at the top: delivery loads after this module

        return delivery.Queued(current.message, current.headers or {}, current.reply, None)

    def spawn(
        self,
        factory: Any,
        *args: Any,
        name: str | None = None,
        mailbox: MailboxConfig | Mapping[str, Any] | None = None,
        metrics_label: str | None = None,
        **kwargs: Any,
    ) -> ActorRef:
        """Start a child actor; it stops when this actor stops.

        Takes what ``ActorSystem.spawn`` takes: a class with its constructor
        arguments, or a :class:`~troupe.Props`, and the spawn options.
        """
        from .props import Props  # props imports this module

        cell = self._cell()
        props = Props.of(factory, args, kwargs)
        return cell.system._spawn(props, name, mailbox, metrics_label, cell)

    def watch(self, other: ActorRef) -> None:
        """Receive ``Terminated(other, reason)`` as a message once ``other`` stops."""
        deliver = self._cell().deliver
        other._cell.add_watcher(deliver)

    def unwatch(self, other: ActorRef) -> None:
        """Stop watching ``other``."""
        other._cell.remove_watcher(self._cell().deliver)

    # -- runtime plumbing (overridden by ThreadActor) ----------------------------------------

    def _troupe_handler(self) -> Callable[[Any], Any]:
        """The callable the dispatcher calls per message."""
        if type(self).receive_batch is not Actor.receive_batch:
            from .batch import batch_handler  # batch imports delivery, which loads later

            return batch_handler(self, is_async_callable(self.receive_batch))
        return self.receive

    def _troupe_call_hook(self, hook: str, *args: Any) -> Any:
        """Run a lifecycle hook; may return an awaitable."""
        return getattr(self, hook)(*args)

    def _troupe_release(self) -> None:
        """Free what the instance holds outside the loop once the actor has stopped."""

    def _cell(self) -> ActorCell:
        try:
            return self._troupe_cell
        except AttributeError:
            raise RuntimeError(
                f"{type(self).__name__} is not running in an ActorSystem; "
                "create actors with system.spawn(...), not by calling the class"
            ) from None


_ASYNC_METHODS: dict[Any, bool] = {}


def is_async_callable(fn: Any) -> bool:
    """True when calling ``fn`` returns a coroutine (cached per method of a class)."""
    function = getattr(fn, "__func__", None)
    if function is None:
        return inspect.iscoroutinefunction(fn)
    try:
        return _ASYNC_METHODS[function]
    except KeyError:
        result = _ASYNC_METHODS[function] = inspect.iscoroutinefunction(function)
        return result
