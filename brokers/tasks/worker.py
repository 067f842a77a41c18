"""Worker actors: each runs one task at a time, taking the next from the intake.

A :class:`TaskWorker` is a thread actor (sync handlers block its thread, as
in a dramatiq worker thread; async handlers run on the system's loop under
their time limit). Each turn it runs tasks from the intake, waiting for
the next on the intake's condition variable, for at most ``turn`` seconds or
``batch`` tasks; then it lets its mailbox in (stop, restart) and goes on.
The pool's :class:`Gate` stops intake first on shutdown, so a stopping
worker finishes only the task it is running.
"""

from __future__ import annotations

import logging
import time
from typing import Any

from troupe import Actor, ThreadActor

from .intake import Intake
from .runner import Runner

logger = logging.getLogger(__name__)

_WAKE = "wake"


class TaskWorker(ThreadActor):
    """Runs tasks from the intake (see the module docstring)."""

    def __init__(self, intake: Intake, runner: Runner, batch: int = 256, turn: float = 0.2) -> None:
        self.intake = intake
        self.runner = runner
        self.batch = batch
        self.turn = turn

    def on_start(self) -> None:
        if self.runner.loop is None:
            self.runner.loop = self.system.loop
        self.ref.tell(_WAKE)

    def receive(self, message: Any) -> None:
        intake = self.intake
        process = self.runner.process
        end = time.monotonic() + self.turn
        for _ in range(self.batch):
            remaining = end - time.monotonic()
            if remaining <= 0:
                break
            job = intake.take(remaining)
            if job is None:
                break
            process(job)
        if not intake.closed and not self.system.is_closing:  # let a system shutdown drain
            self.ref.tell(_WAKE)


class Gate(Actor):
    """Started last, so stopped first: closes the intake so workers and fetchers wind down."""

    def __init__(self, intake: Intake) -> None:
        self.intake = intake

    def on_start(self) -> None:
        self.intake.open()

    def receive(self, message: Any) -> None:
        return None

    def on_stop(self) -> None:
        self.intake.close()
