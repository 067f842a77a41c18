"""``RemoteRef``: a ref to an exported name, or to an actor of another actor system.

It has the local ref's ``tell`` and ``ask`` (same timeouts and exceptions) and
``watch``. Made by :func:`troupe.actors.remote`, or by decoding a message that
carried a ref (a sender, a reply-to) from another process.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from troupe import ActorRef, Terminated
from troupe.errors import check_timeout
from troupe.ref import SYSTEM_TIMEOUT

if TYPE_CHECKING:
    from troupe.mailbox import Accepted

    from .remote_node import RemoteNode


class RemoteRef:
    """Send to an exported name (any of its members) or to one actor of another system.

    ``tell`` to an exported name is at least once (a broker stream consumed by its
    members' bridges: attempts counted, DLQ); ``ask`` goes to one live member and is
    at most once unless ``idempotent=True`` (then, if that member dies, another
    member answers). A tell or ask to an actor carried in a message (``export`` is
    None) goes to its system's inbox, at most once.
    """

    __slots__ = ("_node", "actor", "export", "inbox")

    def __init__(
        self,
        node: RemoteNode,
        *,
        export: str | None = None,
        inbox: str | None = None,
        actor: str | None = None,
    ) -> None:
        self._node = node
        self.export = export
        self.inbox = inbox
        self.actor = actor

    @property
    def name(self) -> str:
        """The exported name, or ``<actor>@<system inbox>``."""
        return self.export if self.export is not None else f"{self.actor}@{self.inbox}"

    @property
    def spec(self) -> dict[str, str]:
        """How the ref travels inside a message (JSON)."""
        if self.export is not None:
            return {"e": self.export}
        return {"i": self.inbox or "", "a": self.actor or ""}

    def tell(
        self,
        message: Any,
        *,
        sender: ActorRef | RemoteRef | None = None,
        headers: dict[str, str] | None = None,
    ) -> Accepted | asyncio.Future[None]:
        """Send ``message`` (JSON, refs allowed) one-way; ``await`` it for backpressure.

        Raises TypeError at once when the message is not JSON, and
        :class:`~troupe.SystemClosed` once this system's remote node is closed (shut down).
        """
        return self._node.tell(self, message, sender, headers)

    def ask(
        self,
        message: Any,
        *,
        timeout: float | None = SYSTEM_TIMEOUT,
        sender: ActorRef | RemoteRef | None = None,
        idempotent: bool = False,
    ) -> asyncio.Future[Any]:
        """Send ``message``; awaiting the result gives the remote handler's result.

        ``timeout`` defaults to the system's ``ask_timeout`` (:class:`~troupe.AskTimeout`
        names the ref). A remote exception arrives as
        :class:`~troupe.actors.RemoteError`; no live member:
        :class:`~troupe.actors.NoMembers`; the member died before replying:
        :class:`~troupe.actors.MemberLost`, unless ``idempotent`` (then another member
        answers).
        """
        node = self._node
        if timeout is SYSTEM_TIMEOUT:
            timeout = node.system.ask_timeout
        elif timeout is not None:
            timeout = check_timeout("timeout", timeout)
        body = node.request(self, message, sender, timeout)
        return node.start_ask(self, body, timeout, idempotent=idempotent)

    def watch(self, watcher: ActorRef | Callable[[Terminated], Any]) -> None:
        """Tell ``watcher`` (a ref, or call it) ``Terminated(self, reason)`` once the name
        has no live member left (at once if it has none). Exported names only."""

        def notify(reason: BaseException | None) -> None:
            notice = Terminated(self._as_watched(), reason)
            if isinstance(watcher, ActorRef):
                watcher.tell(notice)
            else:
                watcher(notice)

        self._node.watch(self, notify)

    def _as_watched(self) -> Any:
        return self  # Terminated.ref is the watched ref, remote here

    def __repr__(self) -> str:
        return f"<RemoteRef {self.name}>"

    def __eq__(self, other: object) -> bool:
        return (
            isinstance(other, RemoteRef) and other._node is self._node and other.spec == self.spec
        )

    def __hash__(self) -> int:
        return hash((self.export, self.inbox, self.actor))


__all__ = ["RemoteRef"]
