"""Tasks run by ``troupe tasks worker worker_tasks`` in test_worker_command.py: each notes
``TAG.EVENT`` (with the pid) into ``$TASK_NOTES``."""

from __future__ import annotations

import os
import time
from pathlib import Path

from troupe.brokers.tasks import TaskRegistry

tasks = TaskRegistry()


def note(tag: str, event: str) -> None:
    """Write the note whole, then give it its name: a reader never sees it empty."""
    final = Path(os.environ["TASK_NOTES"], f"{tag}.{event}")
    staging = final.with_name(f".{final.name}.{os.getpid()}")  # matches no reader's glob
    staging.write_text(str(os.getpid()))
    os.replace(staging, final)


@tasks.task
def quick(tag: str) -> str:
    note(tag, "done")
    return tag.upper()


@tasks.task(queue="slow")
def slow(tag: str, seconds: float) -> None:
    note(tag, "start")
    time.sleep(seconds)
    note(tag, "end")
