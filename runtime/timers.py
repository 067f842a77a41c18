"""Per-actor timers: a message to self after a delay, or periodically."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from .errors import MailboxFull

if TYPE_CHECKING:
    from .cell import ActorCell
    from .clock import TimerHandle


class Timers:
    """Keyed timers of one actor, on the system's clock.

    Starting a timer under a key that is in use replaces the old one. All of an
    actor's timers are cancelled when it stops or restarts. A timer message that
    finds the mailbox full is handled by its overflow policy; under
    ``backpressure`` with no parking left it goes to dead letters.
    """

    __slots__ = ("_cell", "_handles")

    def __init__(self, cell: ActorCell) -> None:
        self._cell = cell
        self._handles: dict[Any, TimerHandle] = {}

    def once(self, delay: float, message: Any, *, key: Any = None) -> Any:
        """Send ``message`` to self after ``delay`` seconds; returns the timer's key."""
        key = self._key(key)
        self.cancel(key)
        self._handles[key] = self._cell.system.clock.call_later(delay, self._fire, key, message)
        return key

    def every(
        self, interval: float, message: Any, *, key: Any = None, initial_delay: float | None = None
    ) -> Any:
        """Send ``message`` to self every ``interval`` seconds; returns the timer's key."""
        if interval <= 0:
            raise ValueError(f"timer interval must be positive, got {interval}")
        key = self._key(key)
        self.cancel(key)
        first = interval if initial_delay is None else initial_delay
        clock = self._cell.system.clock
        self._handles[key] = clock.call_later(first, self._tick, key, message, interval)
        return key

    def cancel(self, key: Any) -> bool:
        """Cancel the timer under ``key``; True when there was one."""
        handle = self._handles.pop(key, None)
        if handle is None:
            return False
        handle.cancel()
        return True

    def cancel_all(self) -> None:
        """Cancel every timer of this actor."""
        for handle in self._handles.values():
            handle.cancel()
        self._handles.clear()

    def active(self) -> list[Any]:
        """Keys of the timers that are scheduled."""
        return list(self._handles)

    def _key(self, key: Any) -> Any:
        return object() if key is None else key

    def _fire(self, key: Any, message: Any) -> None:
        self._handles.pop(key, None)
        self._send(message)

    def _tick(self, key: Any, message: Any, interval: float) -> None:
        if key not in self._handles:
            return
        self._handles[key] = self._cell.system.clock.call_later(
            interval, self._tick, key, message, interval
        )
        self._send(message)

    def _send(self, message: Any) -> None:
        try:
            self._cell.deliver(message)
        except MailboxFull:  # no parking left (backpressure): a dead letter, counted
            self._cell._overflowed(message, "dead_letter")
