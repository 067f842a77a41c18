"""Exceptions raised by the troupe runtime.

Every error says what was wrong and, where it can, what to do about it.
"""

from __future__ import annotations


class TroupeError(Exception):
    """Base class of every troupe error."""


class ConfigError(TroupeError, ValueError):
    """A setting has a value the runtime cannot use; the message names the setting."""

    def __init__(self, setting: str, problem: str) -> None:
        self.setting = setting
        super().__init__(f"invalid setting {setting!r}: {problem}")


class MailboxFull(TroupeError):
    """A message was refused because the recipient's bounded mailbox is full."""

    def __init__(self, actor: str, capacity: int, policy: str) -> None:
        self.actor = actor
        self.capacity = capacity
        self.policy = policy
        super().__init__(
            f"mailbox of actor {actor!r} is full ({capacity} messages, policy {policy!r}); "
            "slow the sender down, raise the capacity, or choose another overflow policy"
        )


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
