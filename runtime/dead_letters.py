"""Dead letters: messages that reached no handler, kept observable and counted."""

from __future__ import annotations

import logging
from collections import Counter, deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

logger = logging.getLogger(__name__)

RECIPIENT_STOPPED = "recipient stopped"
"""The recipient had stopped (or stopped before it handled the message)."""
MAILBOX_FULL = "mailbox full"
"""The recipient's mailbox was full under the ``dead_letter`` overflow policy."""
SYSTEM_CLOSED = "system closed"
"""The system was shutting down and no longer took messages."""

REASONS: tuple[str, ...] = (RECIPIENT_STOPPED, MAILBOX_FULL, SYSTEM_CLOSED)
"""Every reason the runtime itself gives: ``troupe_dead_letters_total`` exports each at 0
from the start, so a dashboard shows a flat line rather than "No data"."""


@dataclass(frozen=True, slots=True)
class DeadLetter:
    """One undelivered message, its intended recipient and why it was not delivered."""

    message: Any
    recipient: str
    reason: str


DeadLetterListener = Callable[[DeadLetter], None]


class DeadLetters:
    """The system's dead-letter office.

    ``count`` and ``by_reason`` count everything; ``recent`` keeps the last
    ``keep`` letters; listeners added with ``subscribe`` see every letter.
    """

    def __init__(self, keep: int = 1000) -> None:
        self.count = 0
        self.by_reason: Counter[str] = Counter()
        self.recent: deque[DeadLetter] = deque(maxlen=keep)
        self._listeners: list[DeadLetterListener] = []

    def publish(self, message: Any, recipient: str, reason: str) -> None:
        """Record a message that could not be delivered."""
        letter = DeadLetter(message, recipient, reason)
        self.count += 1
        self.by_reason[reason] += 1
        self.recent.append(letter)
        logger.debug("dead letter to %s (%s): %r", recipient, reason, message)
        for listener in tuple(self._listeners):
            try:
                listener(letter)
            except Exception:
                logger.exception("dead-letter listener %r failed", listener)

    def subscribe(self, listener: DeadLetterListener) -> Callable[[], None]:
        """Call ``listener`` for every dead letter; returns a function that unsubscribes."""
        self._listeners.append(listener)

        def unsubscribe() -> None:
            if listener in self._listeners:
                self._listeners.remove(listener)

        return unsubscribe
