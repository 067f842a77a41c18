"""``Entity``: the user's class for one key's actor, with durable JSON state.

>>> class Counter(Entity):
...     def initial_state(self) -> dict[str, int]:
...         return {"total": 0}
...     def handle(self, message: dict[str, int]) -> None:
...         self.state["total"] += message["add"]
"""

from __future__ import annotations

from collections.abc import Awaitable
from typing import Any


class Entity:
    """One key's actor: ``self.key``, ``self.state`` (JSON), one message at a time.

    ``state`` is loaded before the first message of an activation (``initial_state()``
    for a key never saved) and saved after each batch of handled messages together
    with the position of the last one, so a redelivered message is skipped, not
    applied twice. ``handle`` may be ``def`` or ``async def``; a message it raises on
    leaves ``state`` as it was before that message. ``on_activate`` / ``on_passivate``
    run when the entity is loaded and when it leaves memory (idle, evicted, its shard
    moved away); ``headers`` are the message's (``troupe-entry-id``, ...).
    """

    __slots__ = ("headers", "key", "position", "saved", "state", "touched")

    def __init__(self, key: str) -> None:
        self.key = key
        self.state: Any = None
        self.headers: dict[str, str] = {}
        self.position: tuple[int, ...] = ()  # of the last applied message
        self.saved = ""  # state JSON after the last applied message
        self.touched = 0.0

    def initial_state(self) -> Any:
        """The state of a key that has none saved (default: an empty dict)."""
        return {}

    def handle(self, message: Any) -> Any | Awaitable[Any]:
        """Apply one message to ``self.state``. Override this."""
        raise NotImplementedError(f"{type(self).__name__} must define handle(message)")

    def on_activate(self) -> Any:
        """Called after the state was loaded, before the first message."""

    def on_passivate(self) -> Any:
        """Called when the entity leaves memory (its state is saved already)."""


__all__ = ["Entity"]
