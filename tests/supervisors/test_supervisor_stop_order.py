"""Under a Supervisor too, a parent's ``on_stop`` runs only after its children stopped:
the supervised children (and their own children) stop, the last started first, before
the supervisor's ``on_stop``, and a nested supervisor's subtree before it."""

from __future__ import annotations

import asyncio

import pytest

from troupe import Actor, ActorNotFound, ActorRef, ActorSystem, Props
from troupe.supervisors import ChildSpec, Supervisor, SupervisorSpec

Log = list[str]


class Kid(Actor):
    """A grandchild whose ``on_stop`` takes a moment."""

    def __init__(self, log: Log) -> None:
        self.log = log

    async def on_stop(self) -> None:
        await asyncio.sleep(0.03)
        self.log.append(f"{self.name} stopped")


class Worker(Actor):
    """A supervised child with a child of its own; notes whether that one is alive."""

    def __init__(self, log: Log) -> None:
        self.log = log

    def on_start(self) -> None:
        self.kid = self.spawn(Props(Kid, self.log), name=f"{self.name}.kid")

    def on_stop(self) -> None:
        self.log.append(f"{self.name} stopped; kid alive: {self.kid.is_alive}")


class Recording(Supervisor):
    """A supervisor whose ``on_stop`` notes which of its children are still alive."""

    def __init__(self, spec: SupervisorSpec, log: Log) -> None:
        super().__init__(spec)
        self.log = log

    def on_stop(self) -> None:
        alive = [child.name for child in self.which_children() if _alive(child.ref)]
        self.log.append(f"{self.name} stopped; alive: {alive}")
        super().on_stop()


def _alive(ref: ActorRef | None) -> bool:
    return ref is not None and ref.is_alive


def tree(log: Log) -> SupervisorSpec:
    inner = SupervisorSpec([ChildSpec(Worker, (log,), name="c")], name="inner")
    return SupervisorSpec(
        [ChildSpec(Worker, (log,), name="a"), ChildSpec(Worker, (log,), name="b"), inner],
        name="outer",
    )


EXPECTED = [
    "c.kid stopped",
    "c stopped; kid alive: False",
    "b.kid stopped",
    "b stopped; kid alive: False",
    "a.kid stopped",
    "a stopped; kid alive: False",
    "outer stopped; alive: []",
]


def started(system: ActorSystem, name: str) -> bool:
    try:
        return system.lookup(name).is_alive
    except ActorNotFound:
        return False


async def start(system: ActorSystem, log: Log) -> ActorRef:
    ref = system.spawn(Recording, tree(log), log, name="outer")
    for _ in range(500):  # children start right after the supervisor
        if all(started(system, name) for name in ("a.kid", "b.kid", "c.kid")):
            return ref
        await asyncio.sleep(0.01)
    raise AssertionError("the tree did not start")


@pytest.mark.parametrize("how", ["stop", "shutdown"])
async def test_a_supervisor_and_its_children_stop_children_first(how: str) -> None:
    log: Log = []
    async with ActorSystem() as system:
        ref = await start(system, log)
        if how == "stop":
            await system.stop(ref)
            assert log == EXPECTED
    assert log == EXPECTED
