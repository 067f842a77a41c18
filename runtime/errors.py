"""Exceptions raised by the troupe runtime.

Every error says what was wrong and, where it can, what to do about it.
"""

from __future__ import annotations

import math
from typing import Any


class TroupeError(Exception):
    """Base class of every troupe error."""


class ConfigError(TroupeError, ValueError):
    """A setting has a value the runtime cannot use; the message names the setting."""

    def __init__(self, setting: str, problem: str) -> None:
        self.setting = setting
        self.problem = problem
        super().__init__(f"invalid setting {setting!r}: {problem}")


class MailboxFull(TroupeError):
    """A message was refused because the recipient's bounded mailbox is full.

    Under ``reject`` when the queue is full; under ``backpressure`` when the
    queue is full and ``max_parked`` senders already wait for room (``parked``).
    """

    def __init__(self, actor: str, capacity: int, policy: str, parked: int | None = None) -> None:
        self.actor = actor
        self.capacity = capacity
        self.policy = policy
        self.parked = parked
        if parked is None:
            full = f"{capacity} messages, policy {policy!r}"
            advice = "slow the sender down, raise the capacity, or choose another overflow policy"
        else:
            full = f"{capacity} messages and {parked} parked senders, policy {policy!r}"
            advice = "await each tell before sending the next, or raise capacity / max_parked"
        super().__init__(f"mailbox of actor {actor!r} is full ({full}); {advice}")


class MessageDropped(TroupeError):
    """An ask's message was dropped by the recipient's overflow policy before it was handled."""

    def __init__(self, actor: str, policy: str) -> None:
        self.actor = actor
        self.policy = policy
        super().__init__(f"message to actor {actor!r} was dropped by overflow policy {policy!r}")


class AskTimeout(TroupeError, TimeoutError):
    """An ask got no reply within its timeout."""

    def __init__(self, actor: str, timeout: float) -> None:
        self.actor = actor
        self.timeout = timeout
        super().__init__(f"actor {actor!r} did not reply within {timeout:g} s")


class ActorNotFound(TroupeError, LookupError):
    """No live actor has the given name."""

    def __init__(self, name: str) -> None:
        self.name = name
        super().__init__(f"no actor named {name!r} is running in this system")


class ActorStopped(TroupeError):
    """The recipient stopped before it handled the message."""

    def __init__(self, actor: str) -> None:
        self.actor = actor
        super().__init__(f"actor {actor!r} stopped before it handled the message")


class NameTaken(TroupeError, ValueError):
    """spawn was given a name that a live actor already has."""

    def __init__(self, name: str) -> None:
        self.name = name
        super().__init__(f"an actor named {name!r} is already running; names are unique")


class SystemClosed(TroupeError, RuntimeError):
    """The actor system is shut down (or was never started)."""


def require_at_least(setting: str, value: int, minimum: int) -> None:
    """Raise ConfigError naming ``setting`` unless ``value >= minimum``."""
    if value < minimum:
        raise ConfigError(setting, f"must be at least {minimum}, got {value!r}")


def require_int(setting: str, value: Any, minimum: int) -> int:
    """Return ``value`` if it is an int (not a bool) ``>= minimum``; else raise ConfigError.

    >>> require_int("throughput", 64, 1)
    64
    """
    if isinstance(value, bool) or not isinstance(value, int):
        raise ConfigError(setting, f"must be an int, got {value!r}")
    require_at_least(setting, value, minimum)
    return value


def check_timeout(setting: str, value: Any, *, zero: bool = False) -> float | None:
    """Seconds as a float, or None (wait forever); else ConfigError naming ``setting``.

    The one check for every timeout (``ask(timeout=)``, ``ask_timeout``,
    ``shutdown_timeout``): a finite int or float, positive (or zero when
    ``zero`` is allowed).

    >>> check_timeout("timeout", 2)
    2.0
    >>> check_timeout("timeout", "1")  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    troupe.errors.ConfigError: invalid setting 'timeout': must be a positive number ... got '1'
    """
    if value is None:
        return None
    kind = "zero or a positive" if zero else "a positive"
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ConfigError(setting, f"must be {kind} number of seconds or None, got {value!r}")
    seconds = float(value)
    if not math.isfinite(seconds) or seconds < 0 or (seconds == 0 and not zero):
        raise ConfigError(setting, f"must be {kind} number of seconds or None, got {value!r}")
    return seconds
