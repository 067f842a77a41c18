"""Trees that the process-supervisor tests run in real child processes.

Each child records what happened to it as small files in ``$TROUPE_TEST_DIR``:
``<pid>.up`` (its process name) once its tree is built, ``<pid>.drained``
(messages handled) when its worker stopped in a graceful shutdown.
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
from pathlib import Path
from typing import Any

from troupe import Actor, ActorSystem
from troupe.supervisors import ProcessSpec, ProcessSupervisor
from troupe.supervisors.spec import ChildSpec, SupervisorSpec

log = logging.getLogger(__name__)
WORK_ITEMS = 20
WORK_SECONDS = 0.04


def _note(suffix: str, text: str) -> None:
    directory = os.environ.get("TROUPE_TEST_DIR")
    if directory:
        path = Path(directory) / f"{os.getpid()}.{suffix}"
        tmp = path.with_suffix(".tmp")
        tmp.write_text(text)
        tmp.rename(path)


class Worker(Actor):
    """Handles 'work' slowly and reports, when it stops, how much it handled."""

    def __init__(self) -> None:
        self.handled = 0

    async def receive(self, message: Any) -> int:
        await asyncio.sleep(WORK_SECONDS)
        if not self.handled:
            log.info("first item")
        self.handled += 1
        return self.handled

    def on_stop(self) -> None:
        log.info("handled %d", self.handled)
        _note("drained", str(self.handled))


def build(system: ActorSystem) -> None:
    """An idle worker."""
    system.spawn(Worker, name="worker")
    _note("up", f"{system.name} {os.environ.get('TROUPE_TEST_HOOKED', '')}")


async def busy(system: ActorSystem) -> None:
    """A worker with WORK_ITEMS messages queued: a graceful stop must handle them all."""
    worker = system.spawn(Worker, name="worker")
    for _ in range(WORK_ITEMS):
        await worker.tell("work")
    _note("up", system.name)


def crash_on_start(system: ActorSystem) -> None:
    """A tree that cannot start."""
    raise RuntimeError("database is unreachable")


def stubborn(system: ActorSystem) -> None:
    """A worker whose handler blocks the event loop, so SIGTERM cannot drain it in time."""

    class Blocker(Actor):
        def receive(self, message: Any) -> None:
            time.sleep(60)

    system.spawn(Blocker, name="blocker").tell("block")
    _note("up", system.name)


class Finisher(Actor):
    """A root actor that does its job and stops itself: its process ends with status 0."""

    def on_start(self) -> None:
        _note("up", self.system.name)
        self.timers.once(0.05, "done")

    def receive(self, message: Any) -> None:
        self.ref.stop()


class BrokenRoot(Actor):
    """A root actor that fails in on_start: its process ends with status 1."""

    def on_start(self) -> None:
        raise RuntimeError("no configuration")

    def receive(self, message: Any) -> None:
        pass


def make_worker_tree() -> type[Actor]:
    """A factory without parameters that returns a tree (an Actor subclass)."""
    return Worker


supervised = SupervisorSpec([ChildSpec(Worker, name="worker")], name="workers")
"""An actor supervision tree as a process's tree."""

pool = ProcessSupervisor([ProcessSpec("process_tree_targets:build", count=2)], name="pool")
"""A whole process tree as a ``troupe run`` target."""

missing_module = ProcessSupervisor([ProcessSpec("no_such_package.workers:build")], name="lost")
"""A process tree whose spec names a module that does not exist."""

NOT_A_TREE = 42


async def slow_start(system: ActorSystem) -> None:
    """A tree that takes far longer to build than any test waits."""
    _note("up", system.name)
    await asyncio.sleep(60)
