"""Handler hooks: the seam through which a message's handling can be observed or changed.

A hook is called with the actor instance and the handler the dispatcher would
call (``receive`` or what a ThreadActor puts in its place) each time an
instance is bound — at start and after every restart — and returns the
handler to call instead. The returned callable must be ``async def`` exactly
when the given one is. ``troupe.testing`` uses it to record traces and to
inject faults (crash an actor at its Nth message, drop or delay a tell).

>>> from troupe import Actor, ActorSystem
>>> seen = []
>>> def record(actor: Actor, handler: Handler) -> Handler:
...     def handle(message):
...         seen.append((actor.name, message))
...         return handler(message)
...     return handle
>>> system = ActorSystem(handler_hook=record)

Set it with ``ActorSystem(handler_hook=...)``; a system started on a loop
with a ``troupe_handler_hook`` attribute (a simulated loop) takes that one
when it has none of its own. With no hook the dispatcher's path is unchanged.
The hook is one :class:`~troupe.Middleware` (its ``wrap_handler``), the
innermost of the system's chain (:mod:`troupe.middleware`).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .actor import Actor

Handler = Callable[[Any], Any]
HandlerHook = Callable[["Actor", Handler], Handler]

__all__ = ["Handler", "HandlerHook"]
