"""Process faults for tests: kill a child process of a :class:`ProcessSupervisor` tree.

The supervisor sees an abnormal exit and restarts the child by its spec's
restart type and the tree's strategy, exactly as after a real crash.
:func:`kill_child` picks the victim by name pattern, or with a seeded choice
among the running children (``troupe.testing`` plans and seeds).

>>> import random
>>> from troupe.supervisors.testing_faults import pick_child
>>> pick_child(["web-0", "worker-0", "worker-1"], "worker-*", random.Random(3))
'worker-0'
"""

from __future__ import annotations

import fnmatch
import logging
import os
import random
import signal
from collections.abc import Sequence

from .process_supervisor import ChildState, ProcessSupervisor

logger = logging.getLogger(__name__)


def pick_child(names: Sequence[str], pattern: str, rng: random.Random | None = None) -> str | None:
    """One of ``names`` matching the glob ``pattern``: the first, or a choice of ``rng``."""
    matching = [name for name in names if fnmatch.fnmatchcase(name, pattern)]
    if not matching:
        return None
    return rng.choice(matching) if rng is not None else matching[0]


def kill_child(
    supervisor: ProcessSupervisor,
    pattern: str = "*",
    *,
    sig: int = signal.SIGKILL,
    rng: random.Random | None = None,
) -> tuple[str, int] | None:
    """Send ``sig`` (default SIGKILL, as ``kill -9``) to a running child process whose name
    matches ``pattern``; returns its name and pid, or None when none runs."""
    running = {
        s.name: s.pid
        for s in supervisor.status()
        if s.pid is not None and s.state is ChildState.RUNNING
    }
    name = pick_child(list(running), pattern, rng)
    if name is None:
        return None
    pid = running[name]
    assert pid is not None
    logger.warning("injected fault: signal %d to child %s (pid %d)", sig, name, pid)
    os.kill(pid, sig)
    return name, pid


__all__ = ["kill_child", "pick_child"]
