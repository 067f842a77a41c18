"""Worker actors: each runs one task at a time, taking the next from the intake.

A :class:`TaskWorker` is a thread actor (sync handlers block its thread, as
in a dramatiq worker thread; async handlers run on the system's loop under
their time limit). It handles a wake-up by running tasks until the intake
has none for it (then it parks until a fetcher wakes it) or until a turn of
``batch`` tasks is done (then it lets its mailbox in — stop, restart — and
goes on). The pool's :class:`Gate` stops intake first on shutdown, so a
stopping worker finishes only the task it is running.
"""

from __future__ import annotations

import logging
from typing import Any

from troupe import Actor, ThreadActor

from .intake import Intake
from .runner import Runner

logger = logging.getLogger(__name__)

_WAKE = "wake"


class TaskWorker(ThreadActor):
    """Runs tasks from the intake (see the module docstring)."""

    def __init__(self, intake: Intake, runner: Runner, batch: int = 64) -> None:
        self.intake = intake
        self.runner = runner
        self.batch = batch

    def on_start(self) -> None:
        if self.runner.loop is None:
            self.runner.loop = self.system.loop
        self.ref.tell(_WAKE)

    def _wake(self) -> None:
        self.ref.tell(_WAKE)

    def receive(self, message: Any) -> None:
        intake = self.intake
        process = self.runner.process
        for _ in range(self.batch):
            job = intake.take_or_park(self._wake)
            if job is None:
                return
            process(job)
        self.ref.tell(_WAKE)


class Gate(Actor):
    """Started last, so stopped first: closes the intake so workers and fetchers wind down."""

    def __init__(self, intake: Intake) -> None:
        self.intake = intake

    def on_start(self) -> None:
        self.intake.closed = False

    def receive(self, message: Any) -> None:
        return None

    def on_stop(self) -> None:
        self.intake.close()
