"""``troupe.cell.current_actor()``: which actor runs, found from any code it calls."""

from __future__ import annotations

import sys
from typing import Any

from troupe import Actor, ActorSystem
from troupe.cell import ActorCell, current_actor


def who() -> str | None:
    """A helper in another module than the runtime's, called from handlers."""
    return current_actor()


class Named(Actor):
    def on_start(self) -> None:
        self.started_as = who()

    def receive(self, message: Any) -> Any:
        return (who(), self.started_as)


class AsyncNamed(Actor):
    async def receive(self, message: Any) -> Any:
        return who()


async def test_handlers_and_hooks_see_their_actor_and_other_code_sees_none() -> None:
    async with ActorSystem() as system:
        sync_ref = system.spawn(Named, name="sync-one")
        async_ref = system.spawn(AsyncNamed, name="async-one")
        sync_ref.tell("queued")  # a turn on the loop, not an inline ask
        assert await sync_ref.ask("who") == ("sync-one", "sync-one")
        assert await async_ref.ask("who") == "async-one"
        assert who() is None  # the test itself is no actor


def test_a_cell_whose_init_has_not_named_it_yet_is_skipped() -> None:
    # The loop watch (troupe.loop_watch) walks the loop thread's stack from another
    # thread, so it can catch a cell at the start of its __init__, before ``name`` is set.
    def method(self: ActorCell) -> str | None:
        return current_actor(frame=sys._getframe())

    assert method(ActorCell.__new__(ActorCell)) is None
