"""``Actor.receive_batch``: a handler that takes the queued messages as one page.

An actor that defines ``receive_batch(batch)`` gets, per call, the message its
turn reached plus the user messages queued behind it (up to ``max_batch``), as
:class:`~troupe.Queued` items (``message``, ``headers``, ``asked``): one call for a
page a consumer bridge delivered with ``ActorRef.deliver_page``, say, to write it to
a database in one statement. Built on ``take_current``/``take_queued``, so every
message is started (a bridge journals its attempt) before the call, and settled
after it:

- items the handler settled itself (``resolve(result)`` / ``reject(exc)``) keep
  that outcome: a per-message failure that fails neither the page nor the actor;
- when it returns, the unsettled items are resolved (an asker gets ``None``);
- when it raises, the unsettled items are rejected with the exception (a bridge
  counts an attempt for each and retries each) and the actor fails once, as after
  a ``receive`` failure: the whole page failed, not one message of it.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

from .delivery import Queued

if TYPE_CHECKING:
    from .actor import Actor


def batch_handler(actor: Actor, is_async: bool) -> Callable[[Any], Any]:
    """The per-message callable the dispatcher calls for an actor with ``receive_batch``:
    it gathers the page and calls ``receive_batch`` once (``is_async``: it is ``async def``)."""
    receive_batch = actor.receive_batch
    more = max(0, type(actor).max_batch - 1)

    if is_async:

        async def handle_async(message: Any) -> None:
            batch = _gather(actor, message, more)
            await receive_batch(batch)  # an exception: dispatch rejects what is unsettled
            _resolve(batch)

        return handle_async

    def handle(message: Any) -> None:
        batch = _gather(actor, message, more)
        result = receive_batch(batch)
        if isinstance(result, Awaitable):
            raise TypeError(f"{type(actor).__name__}.receive_batch returned an awaitable")
        _resolve(batch)

    return handle


def _gather(actor: Actor, message: Any, more: int) -> list[Queued]:
    first = actor.take_current()
    if first is None:  # a plain tell: nobody waits for its outcome
        first = Queued(message, dict(actor.headers), None, None)
    batch = [first]
    if more:
        batch += actor.take_queued(more)
    return batch


def _resolve(batch: list[Queued]) -> None:
    for queued in batch:
        if not queued.settled:
            queued.resolve(None)


__all__ = ["batch_handler"]
