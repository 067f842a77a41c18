"""``PageRun``: a page sent with ``ActorRef.deliver_page``, queued in the mailbox as is.

A page of ``n`` messages takes ``n`` entries of the mailbox's queue, all the same
``PageRun`` object, so the mailbox counts its messages as before (bound, room,
overflow policies). The entries of a page are contiguous and only ever taken from
the front, so each entry taken stands for the page's next message: the run keeps a
cursor. The dispatcher's sync turn walks a run natively (no envelope or reply slot
per message: the page's tracker is told directly); every other path that takes an
entry (``Mailbox.pop``, ``drain``, ``drop_oldest``) turns it into the envelope
``deliver_page`` used to queue (:meth:`PageRun.envelope`), so those paths see the
messages as they always did.

While the dispatcher handles a run's message, the run is the cell's current
message: it answers ``message``, ``headers``, ``sender`` and ``reply`` for it like an
envelope. ``reply`` makes the message's reply slot on first use (a handler that
settles its message itself, through ``Actor.take_current``); the dispatcher then
settles through that slot, so the tracker hears of the message once.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from .delivery import PageSlot, PageTracker
from .envelope import Envelope

if TYPE_CHECKING:
    from .ref import ActorRef


class PageRun:
    """The messages of one ``deliver_page`` call, with their headers and senders, and a
    cursor: ``next`` is the index of the message the next queue entry stands for."""

    __slots__ = ("index", "messages", "next", "page_headers", "senders", "slot", "tracker")

    def __init__(
        self,
        tracker: PageTracker,
        messages: list[Any],
        headers: list[dict[str, str] | None],
        senders: Sequence[ActorRef | None] | None,
    ) -> None:
        self.tracker = tracker
        self.messages = messages
        self.page_headers = headers
        self.senders = senders
        self.next = 0
        self.index = 0  # the message being handled, while the run is the current message
        self.slot: PageSlot | None = None  # its reply slot, once asked for

    def __len__(self) -> int:
        return len(self.messages)

    def envelope(self) -> Envelope:
        """Take the next message as the envelope ``deliver_page`` would have queued."""
        index = self.next
        self.next = index + 1
        senders = self.senders
        return Envelope(
            self.messages[index],
            PageSlot(self.tracker, index),
            senders[index] if senders is not None else None,
            self.page_headers[index],
        )

    # -- the message being handled (the cell's current message) --------------------------------

    @property
    def message(self) -> Any:
        return self.messages[self.index]

    @property
    def sender(self) -> ActorRef | None:
        senders = self.senders
        return senders[self.index] if senders is not None else None

    @property
    def reply(self) -> PageSlot:
        """The reply slot of the message being handled (made on first use)."""
        slot = self.slot
        if slot is None:
            slot = self.slot = PageSlot(self.tracker, self.index)
        return slot

    @property
    def headers(self) -> dict[str, str] | None:
        return self.page_headers[self.index]

    def __repr__(self) -> str:
        return f"PageRun({len(self.messages)} messages, next={self.next})"


def unpacked(item: Any) -> Any:
    """A mailbox entry as its paths other than the sync dispatcher see it: a run's
    entry as its next message's envelope, anything else as it is."""
    return item.envelope() if type(item) is PageRun else item


__all__ = ["PageRun", "unpacked"]
