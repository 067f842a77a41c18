"""A parent's ``on_stop`` runs only after its children (and theirs) have stopped.

Whatever way the parent stops (``system.stop``, shutdown), whatever kind of ``on_stop``
each has (none, a plain ``def``, a slow ``async def``) and whether a child is busy.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

import pytest

from troupe import Actor, ActorRef, ActorSystem, Props

Log = list[str]


class Quiet(Actor):
    """No on_stop: stop_idle ends it at once."""

    def __init__(self, log: Log) -> None:
        self.log = log


class Plain(Quiet):
    def on_stop(self) -> None:
        self.log.append(f"{self.name} stopped")


class Slow(Quiet):
    async def on_stop(self) -> None:
        await asyncio.sleep(0.05)
        self.log.append(f"{self.name} stopped")


class Busy(Plain):
    """Handling a message (a blocking one) when the stop arrives."""

    def receive(self, message: Any) -> None:
        time.sleep(0.02)


class Middle(Plain):
    """A child with a child of its own."""

    def on_start(self) -> None:
        self.kid = self.spawn(Props(Slow, self.log), name=f"{self.name}.kid")


class Parent(Actor):
    """Spawns one child of each kind; its on_stop notes which of them are still alive."""

    def __init__(self, log: Log) -> None:
        self.log = log
        self.kids: list[ActorRef] = []

    def on_start(self) -> None:
        for kind in (Quiet, Plain, Slow, Busy, Middle):
            self.kids.append(self.spawn(Props(kind, self.log), name=kind.__name__.lower()))
        for i in range(3):
            self.kids[3].tell(i)  # busy

    def on_stop(self) -> None:
        alive = [kid.name for kid in self.kids if kid.is_alive]
        self.log.append(f"parent stopped; alive: {alive}")


class AsyncParent(Parent):
    async def on_stop(self) -> None:  # type: ignore[override]
        Parent.on_stop(self)


CHILDREN_STOPPED = [
    "middle.kid stopped",  # the grandchild before its parent
    "middle stopped",
    "busy stopped",
    "slow stopped",
    "plain stopped",
]  # the last spawned first


@pytest.mark.parametrize("parent", [Parent, AsyncParent])
async def test_stopping_a_parent_stops_its_children_before_its_on_stop(
    parent: type[Parent],
) -> None:
    log: Log = []
    async with ActorSystem() as system:
        ref = system.spawn(parent, log, name="parent")
        await asyncio.sleep(0.01)  # busy is handling its messages
        await system.stop(ref)
        assert log == [*CHILDREN_STOPPED, "parent stopped; alive: []"]


@pytest.mark.parametrize("parent", [Parent, AsyncParent])
async def test_shutdown_stops_children_before_their_parents_on_stop(
    parent: type[Parent],
) -> None:
    log: Log = []
    async with ActorSystem() as system:
        system.spawn(parent, log, name="parent")
        await asyncio.sleep(0.01)
    assert log == [*CHILDREN_STOPPED, "parent stopped; alive: []"]
