"""Seams for bridges: deliveries whose outcome is reported, and queued messages taken
in a batch.

``ActorRef.deliver(message, tracker)`` is a ``tell`` whose outcome reaches a
:class:`DeliveryTracker`: ``started()`` right before the handler runs, then
``finished(error)`` exactly once — ``None`` after the handler returned, the
handler's exception, or the reason it never ran (:class:`~troupe.ActorStopped`,
:class:`~troupe.MessageDropped`, ...). A consumer bridge acks on ``finished(None)``.

``ActorRef.deliver_page(items, tracker)`` delivers a page of messages the same
way in one call (one room check, one scheduling of the target): a
:class:`PageTracker` hears ``started(index)`` and ``finished(index, error)`` per
message, with the same exactness as a ``DeliveryTracker`` (each message is
handled on its own, in order; a failure fails that message only, and the messages
behind it stay queued for the restarted actor).

``Actor.take_queued(limit)`` hands a batching actor (a producer bridge) the user
messages queued behind the current one as :class:`Queued` items; each one is
settled with ``resolve(result)`` or ``reject(exc)``, and counted in metrics
like a handled message.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any, Protocol

from .metrics import BUCKET0, FAILED

if TYPE_CHECKING:
    import asyncio

    from .metrics import ActorStats

logger = logging.getLogger(__name__)


class DeliveryTracker(Protocol):
    """Told what became of one message sent with ``ActorRef.deliver``.

    Both methods run on the system's loop thread and must not block. ``retry`` is
    True when the message's handler has failed before (a bridge redelivers it): a
    retry that fails again is that message's failure, not a sign that the target
    is in a crash loop, so it does not count toward one (see
    :meth:`troupe.restart.RestartTracker.record_failure`).
    """

    @property
    def retry(self) -> bool:
        """True when a handler failed on this message before."""
        ...

    def started(self) -> None:
        """Called immediately before the handler is invoked for the message."""

    def finished(self, error: BaseException | None) -> None:
        """Called once: ``None`` when the handler returned, else why it failed or never ran."""


class TrackedReply:
    """The reply slot of an envelope sent with ``deliver``: settles its tracker once.

    It offers the few Future methods the runtime calls on reply slots, so every
    path that settles an ask's future (handler result or exception, dropped,
    undeliverable, killed) settles a tracker the same way.
    """

    __slots__ = ("_done", "tracker")

    def __init__(self, tracker: DeliveryTracker) -> None:
        self.tracker = tracker
        self._done = False

    def done(self) -> bool:
        return self._done

    def cancelled(self) -> bool:
        return False

    def set_result(self, result: Any) -> None:
        if not self._done:
            self._done = True
            self.tracker.finished(None)

    def set_exception(self, exc: BaseException) -> None:
        if not self._done:
            self._done = True
            self.tracker.finished(exc)

    @property
    def retry(self) -> bool:
        """The tracker's ``retry``: the message failed in a handler before."""
        return self.tracker.retry

    def start(self, actor: str) -> bool:
        """Call ``tracker.started()``; on an exception, finish with it and return False."""
        try:
            self.tracker.started()
        except Exception as exc:
            logger.exception("delivery tracker of a message to %s failed to start", actor)
            self.set_exception(exc)
            return False
        return True


class PageTracker(Protocol):
    """Told what became of each message of a page sent with ``ActorRef.deliver_page``.

    The page's messages are numbered from 0 in the order given. The methods mean
    what :class:`DeliveryTracker`'s mean, for the message at ``index``; they run on
    the system's loop thread and must not block.
    """

    def retry(self, index: int) -> bool:
        """True when a handler failed on the message at ``index`` before."""
        ...

    def started(self, index: int) -> None:
        """Called immediately before a handler is invoked for the message at ``index``."""

    def finished(self, index: int, error: BaseException | None) -> None:
        """Called once per message: ``None`` when its handler returned, else why not."""


class PageSlot(TrackedReply):
    """The reply slot of one message of a page sent with ``deliver_page``."""

    __slots__ = ("index", "page")

    def __init__(self, page: PageTracker, index: int) -> None:
        self.page = page
        self.index = index
        self._done = False

    def set_result(self, result: Any) -> None:
        if not self._done:
            self._done = True
            self.page.finished(self.index, None)

    def set_exception(self, exc: BaseException) -> None:
        if not self._done:
            self._done = True
            self.page.finished(self.index, exc)

    @property
    def retry(self) -> bool:
        """The page tracker's ``retry`` for this message."""
        return self.page.retry(self.index)

    def start(self, actor: str) -> bool:
        """Call ``page.started(index)``; on an exception, finish with it and return False."""
        try:
            self.page.started(self.index)
        except Exception as exc:
            logger.exception("page tracker of a message to %s failed to start", actor)
            self.set_exception(exc)
            return False
        return True


class Queued:
    """A user message taken from the mailbox with ``Actor.take_queued``.

    ``message`` and ``headers`` (a dict, empty when it came without; it carries
    ``traceparent``) are what was sent; ``asked`` is True when the sender waits
    for the outcome (``ask`` or ``deliver``). Settle it once with
    :meth:`resolve` or :meth:`reject`; later calls are ignored. A taken message
    still unsettled when the handler fails is rejected with the handler's error.
    """

    __slots__ = ("_reply", "_settled", "_stats", "asked", "headers", "message")

    def __init__(
        self,
        message: Any,
        headers: dict[str, str],
        reply: asyncio.Future[Any] | TrackedReply | None,
        stats: ActorStats | None,
    ) -> None:
        self.message = message
        self.headers = headers
        self.asked = reply is not None
        self._reply = reply
        self._stats = stats
        self._settled = False

    @property
    def settled(self) -> bool:
        """True once resolved or rejected."""
        return self._settled

    def resolve(self, result: Any = None) -> None:
        """The message was handled: reply ``result`` to an asker; counted ``ok``."""
        if self._settled:
            return
        self._settled = True
        if self._stats is not None:
            self._stats.counts[BUCKET0] += 1
        reply = self._reply
        if reply is not None and not reply.done():
            reply.set_result(result)

    def reject(self, exc: BaseException) -> None:
        """The message failed with ``exc``: raised to an asker; counted ``failed``."""
        if self._settled:
            return
        self._settled = True
        stats = self._stats
        if stats is not None:
            stats.counts[BUCKET0] += 1
            stats.counts[FAILED] += 1
        reply = self._reply
        if reply is not None and not reply.done():
            reply.set_exception(exc)

    def __repr__(self) -> str:
        return f"Queued({self.message!r}, asked={self.asked})"


__all__ = ["DeliveryTracker", "PageSlot", "PageTracker", "Queued", "TrackedReply"]
