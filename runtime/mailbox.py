"""Bounded mailboxes with explicit overflow policies and a system lane.

The user lane holds at most ``capacity`` messages. What happens to a message
that arrives when it is full is the ``policy``:

``backpressure``  the message waits beside the mailbox and ``await ref.tell(m)``
                  returns only once it is in; nothing is lost.
``drop_newest``   the arriving message is dropped and counted.
``drop_oldest``   the oldest queued message is dropped and counted.
``reject``        ``tell`` raises :class:`~troupe.MailboxFull`.
``dead_letter``   the arriving message goes to the system's dead letters.

The system lane (stop, restart, watch) is unbounded and always drained first.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Awaitable, Callable, Generator
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from .errors import ConfigError, MailboxFull

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

    >>> MailboxConfig(capacity=10, policy="drop_oldest").policy
    <OverflowPolicy.DROP_OLDEST: 'drop_oldest'>
    """

    capacity: int = DEFAULT_CAPACITY
    policy: OverflowPolicy | str = OverflowPolicy.BACKPRESSURE

    def __post_init__(self) -> None:
        if isinstance(self.capacity, bool) or not isinstance(self.capacity, int):
            raise ConfigError("mailbox.capacity", f"must be an int, got {self.capacity!r}")
        if self.capacity < 1:
            raise ConfigError("mailbox.capacity", f"must be at least 1, got {self.capacity}")
        try:
            object.__setattr__(self, "policy", OverflowPolicy(self.policy))
        except ValueError:
            choices = ", ".join(p.value for p in OverflowPolicy)
            raise ConfigError(
                "mailbox.policy", f"unknown policy {self.policy!r}; choose one of {choices}"
            ) from None


class Accepted(Awaitable[None]):
    """The awaitable a ``tell`` returns when the message went straight in."""

    __slots__ = ()

    def __await__(self) -> Generator[Any, Any, None]:
        return iter(())  # type: ignore[return-value]  # an empty iterator finishes at once

    def done(self) -> bool:
        return True

    def __repr__(self) -> str:
        return "<Accepted>"


ACCEPTED = Accepted()

#: Called with (message item, reason) when the policy drops or dead-letters a message.
OverflowHandler = Callable[[Any, str], None]


class Mailbox:
    """One actor's queue of user messages plus its system lane. Loop-thread only.

    The deques are made on first use, so an idle actor stays small. The cell's
    dispatch loop reads ``queue`` (None or a deque) directly: it is the hot path.
    """

    __slots__ = ("_on_overflow", "capacity", "dropped", "policy", "queue", "system", "waiters")

    def __init__(self, config: MailboxConfig, on_overflow: OverflowHandler) -> None:
        self.capacity = config.capacity
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
            queue = self.queue = deque()
        if len(queue) < self.capacity and not self.waiters:
            queue.append(item)
            return ACCEPTED
        return self.overflow(item, actor_name)

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
            future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
            if self.waiters is None:
                self.waiters = deque()
            self.waiters.append((item, future))
            return future
        if policy is OverflowPolicy.REJECT:
            raise MailboxFull(actor_name, self.capacity, policy.value)
        if policy is OverflowPolicy.DROP_OLDEST:
            oldest = queue.popleft()
            queue.append(item)
            self.dropped += 1
            self._on_overflow(oldest, policy.value)
            return ACCEPTED
        if policy is OverflowPolicy.DROP_NEWEST:
            self.dropped += 1
        self._on_overflow(item, policy.value)
        return ACCEPTED

    def pop(self) -> Any:
        """Take the oldest user message; raise IndexError when there is none."""
        queue = self.queue
        if queue is None:
            raise IndexError("empty mailbox")
        item = queue.popleft()
        if self.waiters:
            self.admit_waiter()
        return item

    def admit_waiter(self) -> None:
        """Move the oldest message parked by backpressure into the queue (room was made)."""
        waiters = self.waiters
        queue = self.queue
        assert waiters is not None and queue is not None
        while waiters:
            item, future = waiters.popleft()
            if future.cancelled():
                continue  # the sender gave up on this send
            queue.append(item)
            future.set_result(None)
            return

    def drain(self) -> list[Any]:
        """Remove and return every queued and parked user message (oldest first)."""
        items: list[Any] = list(self.queue) if self.queue else []
        if self.queue:
            self.queue.clear()
        if self.waiters:
            for item, future in self.waiters:
                if not future.cancelled():
                    items.append(item)
                    future.set_result(None)
            self.waiters.clear()
        return items
