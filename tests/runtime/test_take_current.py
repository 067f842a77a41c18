"""``Actor.take_current``: a handler settles the message it handles itself (batching bridges)."""

from __future__ import annotations

from typing import Any

import pytest

from troupe import Actor, ActorSystem


class Settler(Actor):
    """Rejects negative numbers through the taken message, resolves others, returns junk."""

    def __init__(self) -> None:
        self.taken: list[bool] = []

    async def receive(self, message: Any) -> Any:
        current = self.take_current()
        self.taken.append(current is not None)
        if current is not None:
            assert current.message == message and current.asked
            if message < 0:
                current.reject(ValueError(f"negative: {message}"))
            else:
                current.resolve(message * 2)
        return "ignored once settled"


async def test_a_settled_current_message_replies_and_a_rejection_does_not_fail_the_actor() -> None:
    async with ActorSystem() as system:
        ref = system.spawn(Settler)
        assert await ref.ask(21) == 42
        with pytest.raises(ValueError, match="negative"):
            await ref.ask(-1)
        await ref.tell(5)  # told: nothing to take
        assert await ref.ask(1) == 2
        cell = system.cell_of(ref)
        assert cell.restarts == 0
        assert cell.actor.taken == [True, True, False, True]  # type: ignore[attr-defined]
