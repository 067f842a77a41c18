"""The envelope that carries a message with its reply slot, sender and headers.

A plain ``tell`` without sender or headers puts the bare message in the
mailbox; everything else travels in an ``Envelope``.
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, Any, TypeAlias

if TYPE_CHECKING:
    from .delivery import TrackedReply
    from .ref import ActorRef

    #: An ask's future, or the tracker slot of ``ActorRef.deliver``.
    Reply: TypeAlias = asyncio.Future[Any] | TrackedReply


class Envelope:
    """A message plus what came with it: reply slot, sender ref, headers."""

    __slots__ = ("headers", "message", "reply", "sender")

    def __init__(
        self,
        message: Any,
        reply: Reply | None = None,
        sender: ActorRef | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        self.message = message
        self.reply = reply
        self.sender = sender
        self.headers = headers

    def __repr__(self) -> str:
        return f"Envelope({self.message!r}, sender={self.sender!r})"


def open_envelope(item: Any) -> tuple[Any, Reply | None]:
    """Return (message, reply slot) for a mailbox item, wrapped or bare."""
    if type(item) is Envelope:
        return item.message, item.reply
    return item, None
