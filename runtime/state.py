"""The states of an actor's life, and the notice watchers get at its end."""

from __future__ import annotations

from enum import IntEnum
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .ref import ActorRef


class State(IntEnum):
    """Where a cell is in its life."""

    STARTING = 0
    RUNNING = 1
    SUSPENDED = 2  # failed; waiting for its supervisor's directive or a restart delay
    STOPPING = 3
    STOPPED = 4


class Terminated:
    """Sent to watchers when the watched actor stops; ``reason`` is None for a normal stop."""

    __slots__ = ("reason", "ref")

    def __init__(self, ref: ActorRef, reason: BaseException | None) -> None:
        self.ref = ref
        self.reason = reason

    def __repr__(self) -> str:
        return f"Terminated({self.ref!r}, reason={self.reason!r})"
