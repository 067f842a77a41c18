"""Tasks run by ``troupe tasks worker worker_tasks`` in test_worker_command.py: each notes
``TAG.EVENT`` (with the pid) into ``$TASK_NOTES``."""

from __future__ import annotations

import os
import time
from pathlib import Path

from troupe.brokers.tasks import TaskRegistry

tasks = TaskRegistry()


def note(tag: str, event: str) -> None:
    Path(os.environ["TASK_NOTES"], f"{tag}.{event}").write_text(str(os.getpid()))


@tasks.task
def quick(tag: str) -> str:
    note(tag, "done")
    return tag.upper()


@tasks.task(queue="slow")
def slow(tag: str, seconds: float) -> None:
    note(tag, "start")
    time.sleep(seconds)
    note(tag, "end")
