"""Actors and helpers shared by the actor-supervision tests."""

from __future__ import annotations

import asyncio
import threading
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import pykka

from troupe import Actor, ActorSystem, ThreadActor, VirtualClock


class Crash(Exception):
    """What a worker raises when told to crash."""


class StartCrash(Exception):
    """What a worker raises in on_start when its journal says so."""


@dataclass
class Journal:
    """What the workers of one test did: instances made, starts, stops, messages handled."""

    made: Counter[str] = field(default_factory=Counter)
    events: list[tuple[str, str]] = field(default_factory=list)
    handled: list[tuple[str, int, Any]] = field(default_factory=list)
    fail_start: set[str] = field(default_factory=set)

    def starts(self, name: str) -> int:
        return self.made[name]


class Worker(Actor):
    """Counts messages; "crash" raises Crash, "oops" KeyError, "exit" stops it normally,
    "count" replies."""

    def __init__(self, journal: Journal) -> None:
        self.journal = journal
        self.count = 0

    def on_start(self) -> None:
        journal = self.journal
        journal.made[self.name] += 1
        self.incarnation = journal.made[self.name]
        journal.events.append(("start", self.name))
        if self.name in journal.fail_start:
            raise StartCrash(self.name)

    def on_stop(self) -> None:
        self.journal.events.append(("stop", self.name))

    def receive(self, message: Any) -> Any:
        if message == "crash":
            raise Crash(self.name)
        if message == "oops":
            raise KeyError(self.name)
        if message == "exit":
            self.ref.stop()
            return None
        if message == "count":
            return self.count
        self.count += 1
        self.journal.handled.append((self.name, self.incarnation, message))
        return self.count


class ThreadWorker(ThreadActor):
    """A Worker whose code runs on its own pykka thread."""

    def __init__(self, journal: Journal) -> None:
        self.journal = journal
        self.count = 0

    def on_start(self) -> None:
        self.journal.made[self.name] += 1
        self.incarnation = self.journal.made[self.name]

    def receive(self, message: Any) -> Any:
        if message == "crash":
            raise Crash(self.name)
        if message == "oops":
            raise KeyError(self.name)
        self.count += 1
        self.journal.handled.append((self.name, self.incarnation, message))
        return threading.current_thread().name


async def settle(clock: VirtualClock, seconds: float = 0.0) -> None:
    """Advance virtual time and let every ready callback and task run."""
    await clock.advance(seconds)
    for _ in range(5):
        await clock.advance(0)


def leftovers(system: ActorSystem) -> dict[str, Any]:
    """What is still alive after a shutdown: actors, tasks, pykka threads."""
    current = asyncio.current_task()
    tasks = [t for t in asyncio.all_tasks() if t is not current and not t.done()]
    return {
        "actors": [r.name for r in system.actors()],
        "tasks": tasks,
        "pykka": pykka.ActorRegistry.get_all(),
    }


async def no_pykka_threads(timeout: float = 5.0) -> bool:
    """Wait (real time) for stopped pykka threads to finish; True when none is left."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while loop.time() < deadline:
        if not pykka.ActorRegistry.get_all() and not any(
            t.name.startswith("_ThreadHost") for t in threading.enumerate()
        ):
            return True
        await asyncio.sleep(0.01)
    return False
