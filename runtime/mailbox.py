"""Bounded mailboxes with explicit overflow policies and a system lane.

The user lane holds at most ``capacity`` messages. What happens to a message
that arrives when it is full is the ``policy``:

``backpressure``  the message is parked beside the mailbox and ``await ref.tell(m)``
                  returns only once it is in; nothing accepted is lost. At most
                  ``max_parked`` messages (default: ``capacity``) are parked;
                  past that ``tell`` raises :class:`~troupe.MailboxFull`, so
                  queued + parked never exceeds ``capacity + max_parked``
                  however the messages were sent (awaited or not, from a
                  handler, a thread or a timer). Only death-watch notices
                  (``Terminated``, one per watched actor) park beyond it.
``drop_newest``   the arriving message is dropped and counted.
``drop_oldest``   the oldest queued message is dropped and counted.
``reject``        ``tell`` raises :class:`~troupe.MailboxFull`.
``dead_letter``   the arriving message goes to the system's dead letters.

The system lane (stop, restart, watch) is unbounded and always drained first.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Awaitable, Callable, Generator, Mapping
from dataclasses import dataclass, fields
from enum import StrEnum
from typing import TYPE_CHECKING, Any

from .envelope import Envelope
from .errors import ConfigError, MailboxFull, require_int
from .page_run import PageRun, unpacked
from .state import Terminated

DEFAULT_CAPACITY = 1000


class OverflowPolicy(StrEnum):
    """What a full mailbox does with one more message."""

    BACKPRESSURE = "backpressure"
    DROP_NEWEST = "drop_newest"
    DROP_OLDEST = "drop_oldest"
    REJECT = "reject"
    DEAD_LETTER = "dead_letter"


@dataclass(frozen=True, slots=True)
class MailboxConfig:
    """Capacity and overflow policy of an actor's mailbox.

    ``max_parked`` bounds how many senders ``backpressure`` parks beside a full
    mailbox (default: ``capacity``); one more ``tell`` raises ``MailboxFull``.

    >>> MailboxConfig(capacity=10, policy="drop_oldest").policy
    <OverflowPolicy.DROP_OLDEST: 'drop_oldest'>
    >>> MailboxConfig(capacity=10).max_parked
    10
    """

    capacity: int = DEFAULT_CAPACITY
    policy: OverflowPolicy | str = OverflowPolicy.BACKPRESSURE
    max_parked: int | None = None

    def __post_init__(self) -> None:
        require_int("mailbox.capacity", self.capacity, 1)
        try:
            object.__setattr__(self, "policy", OverflowPolicy(self.policy))
        except ValueError:
            choices = ", ".join(p.value for p in OverflowPolicy)
            raise ConfigError(
                "mailbox.policy", f"unknown policy {self.policy!r}; choose one of {choices}"
            ) from None
        if self.max_parked is None:
            object.__setattr__(self, "max_parked", self.capacity)
        else:
            require_int("mailbox.max_parked", self.max_parked, 0)

    @classmethod
    def coerce(cls, value: object, setting: str = "mailbox") -> MailboxConfig:
        """``value`` as a MailboxConfig: one already, or a mapping of its fields.

        Anything else raises ConfigError naming ``setting``.

        >>> MailboxConfig.coerce({"capacity": 5}).capacity
        5
        """
        if type(value) is cls:
            return value
        if isinstance(value, MailboxConfig):
            return value
        if isinstance(value, Mapping):
            known = {f.name for f in fields(cls)}
            unknown = sorted(str(key) for key in value if key not in known)
            if unknown:
                raise ConfigError(
                    setting,
                    f"unknown key(s) {', '.join(unknown)}; known: {', '.join(sorted(known))}",
                )
            return cls(**value)
        raise ConfigError(
            setting, f"must be a MailboxConfig or a mapping of its fields, got {value!r}"
        )


_FINISHED = iter(())  # stays exhausted: one object serves every await


class Accepted(Awaitable[None]):
    """The awaitable a ``tell`` returns when the message went straight in."""

    __slots__ = ()

    if TYPE_CHECKING:

        def __await__(self) -> Generator[Any, Any, None]: ...

    else:
        # ``await`` gets an exhausted iterator (it finishes at once) from a C method: no
        # Python frame per awaited tell, as a Python ``__await__`` would cost.
        __await__ = staticmethod(_FINISHED.__iter__)

    def done(self) -> bool:
        return True

    def __repr__(self) -> str:
        return "<Accepted>"


ACCEPTED = Accepted()

#: Empty queues of actors that went idle, reused by the next mailbox that needs one
#: (an idle actor holds no deque; a few spare ones save allocations). Appends and pops
#: are atomic, so systems on several threads may share it.
SPARE_QUEUES: list[deque[Any]] = []
SPARE_LIMIT = 256

#: Called with (message item, reason) when the policy drops or dead-letters a message.
OverflowHandler = Callable[[Any, str], None]


class Mailbox:
    """One actor's queue of user messages plus its system lane. Loop-thread only.

    The deques are made on first use, so an idle actor stays small. The cell's
    dispatch loop reads ``queue`` (None or a deque) directly: it is the hot path. A page
    from ``deliver_page`` is one entry per message, all one :class:`~troupe.page_run.PageRun`.
    """

    __slots__ = (
        "_on_overflow",
        "capacity",
        "dropped",
        "max_parked",
        "policy",
        "queue",
        "system",
        "waiters",
    )

    def __init__(self, config: MailboxConfig, on_overflow: OverflowHandler) -> None:
        self.capacity = config.capacity
        max_parked = config.max_parked
        self.max_parked = config.capacity if max_parked is None else max_parked
        policy = config.policy  # MailboxConfig made it an OverflowPolicy
        self.policy = policy if type(policy) is OverflowPolicy else OverflowPolicy(policy)
        self.dropped = 0
        self.queue: deque[Any] | None = None
        self.system: deque[Callable[[], Any]] | None = None
        self.waiters: deque[tuple[Any, asyncio.Future[None]]] | None = None
        self._on_overflow = on_overflow

    def __len__(self) -> int:
        return len(self.queue) if self.queue is not None else 0

    @property
    def waiting(self) -> int:
        """Messages parked by ``backpressure`` until there is room."""
        return len(self.waiters) if self.waiters else 0

    def put(self, item: Any, actor_name: str) -> Accepted | asyncio.Future[None]:
        """Add a user message; return an awaitable that completes once it is queued."""
        queue = self.queue
        if queue is None:
            queue = self.queue = SPARE_QUEUES.pop() if SPARE_QUEUES else deque()
        if len(queue) < self.capacity and not self.waiters:
            queue.append(item)
            return ACCEPTED
        return self.overflow(item, actor_name)

    def release(self) -> None:
        """Drop the empty deques of an idle actor (back to its size before any message)."""
        queue = self.queue
        if queue is not None and not queue:
            self.queue = None
            if len(SPARE_QUEUES) < SPARE_LIMIT:
                SPARE_QUEUES.append(queue)
        if self.system is not None and not self.system:
            self.system = None
        if self.waiters is not None and not self.waiters:
            self.waiters = None

    def put_system(self, action: Callable[[], Any]) -> None:
        """Add a system message (stop, restart, watch): it runs before any user message."""
        if self.system is None:
            self.system = deque()
        self.system.append(action)

    def overflow(self, item: Any, actor_name: str) -> Accepted | asyncio.Future[None]:
        """Apply the overflow policy to ``item``, which found the mailbox full."""
        queue = self.queue
        assert queue is not None
        policy = self.policy
        if policy is OverflowPolicy.BACKPRESSURE:
            waiters = self.waiters
            if waiters is None:
                waiters = self.waiters = deque()
            if (
                len(waiters) >= self.max_parked
                and type(item) is not Terminated  # one per watched actor: never refused
                and self._prune() >= self.max_parked
            ):
                raise MailboxFull(actor_name, self.capacity, policy.value, len(waiters))
            future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
            waiters.append((item, future))
            return future
        if policy is OverflowPolicy.REJECT:
            raise MailboxFull(actor_name, self.capacity, policy.value)
        if policy is OverflowPolicy.DROP_OLDEST:
            oldest = unpacked(queue.popleft())
            queue.append(item)
            self.dropped += 1
            self._on_overflow(oldest, policy.value)
            return ACCEPTED
        if policy is OverflowPolicy.DROP_NEWEST:
            self.dropped += 1
        self._on_overflow(item, policy.value)
        return ACCEPTED

    def pop(self) -> Any:
        """Take the oldest user message (a page's as its envelope: troupe.page_run);
        raise IndexError when there is none."""
        queue = self.queue
        if queue is None:
            raise IndexError("empty mailbox")
        item = queue.popleft()
        if self.waiters:
            self.admit_waiter()
        return item.envelope() if type(item) is PageRun else item

    def admit_waiter(self) -> None:
        """Move the oldest message parked by backpressure into the queue (room was made)."""
        waiters = self.waiters
        queue = self.queue
        assert waiters is not None and queue is not None
        while waiters:
            item, future = waiters.popleft()
            if _withdrawn(item, future):
                continue
            queue.append(item)
            future.set_result(None)
            return

    def _prune(self) -> int:
        """Forget parked messages whose sender gave up; return how many stay parked."""
        waiters = self.waiters
        assert waiters is not None
        live = [(item, future) for item, future in waiters if not _withdrawn(item, future)]
        if len(live) != len(waiters):
            waiters.clear()
            waiters.extend(live)
        return len(waiters)

    def drain(self) -> list[Any]:
        """Remove and return every queued and parked user message (oldest first; a page's
        as their envelopes)."""
        items: list[Any] = [unpacked(item) for item in self.queue] if self.queue else []
        if self.queue:
            self.queue.clear()
        if self.waiters:
            for item, future in self.waiters:
                if not _withdrawn(item, future):
                    items.append(item)
                    future.set_result(None)
            self.waiters.clear()
        return items


def _withdrawn(item: Any, future: asyncio.Future[None]) -> bool:
    """True for a parked message its sender gave up on: the awaiting ``tell`` was
    cancelled, or the ``ask`` already has its outcome (timed out, cancelled)."""
    if future.cancelled():
        return True
    if type(item) is Envelope:
        reply = item.reply
        return reply is not None and reply.done()
    return False
