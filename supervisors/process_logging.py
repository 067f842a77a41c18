"""Log lines that name the process they come from, for the root and every child.

Used by the ``troupe`` command and by child processes; a library user who
configures logging themselves never calls it.
"""

from __future__ import annotations

import logging
import sys

FORMAT = "%(asctime)s %(levelname)-7s %(troupe_process)s[%(process)d] %(name)s: %(message)s"
LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")


class _ProcessLabel(logging.Filter):
    def __init__(self, label: str) -> None:
        super().__init__()
        self.label = label

    def filter(self, record: logging.LogRecord) -> bool:
        record.troupe_process = self.label
        return True


def configure_logging(level: str | int, process: str) -> None:
    """Send log records to stderr as ``time LEVEL process[pid] logger: message``.

    Actor names appear in the runtime's own messages (failures, restarts,
    stops); ``process`` is ``root`` or the child's name (``workers-0``).
    """
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter(FORMAT))
    handler.addFilter(_ProcessLabel(process))
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level.upper() if isinstance(level, str) else level)
