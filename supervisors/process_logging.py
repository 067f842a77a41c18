"""Log lines that name the process they come from, for the root and every child.

Used by the ``troupe`` command and by child processes; a library user who
configures logging themselves never calls it.
"""

from __future__ import annotations

import logging
import sys

from troupe import cell

FORMAT = "%(asctime)s %(levelname)-7s %(troupe_label)s %(name)s: %(message)s"
LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")


MAX_DEPTH = 40


def current_actor() -> str | None:
    """The name of the actor whose handler or hook is running on this thread's stack."""
    return cell.current_actor(MAX_DEPTH)


class _ProcessLabel(logging.Filter):
    def __init__(self, label: str) -> None:
        super().__init__()
        self.label = label

    def filter(self, record: logging.LogRecord) -> bool:
        actor = current_actor()
        label = f"{self.label}[{record.process}]"
        record.troupe_label = f"{label}/{actor}" if actor else label
        return True


def configure_logging(level: str | int, process: str) -> None:
    """Send log records to stderr as ``time LEVEL process[pid]/actor logger: message``.

    ``process`` is ``root`` or the child's name (``workers-0``); ``/actor``
    names the actor when the record comes from an actor's handler or hook.
    """
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter(FORMAT))
    handler.addFilter(_ProcessLabel(process))
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level.upper() if isinstance(level, str) else level)
