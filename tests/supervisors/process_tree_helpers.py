"""Helpers of the process-tree tests: reading what children noted, process liveness."""

from __future__ import annotations

import os
from pathlib import Path

import psutil

from tests.helpers import eventually, wait_sync

__all__ = ["HERE", "alive", "child_env", "eventually", "notes", "wait_sync"]

HERE = Path(__file__).resolve().parent


def notes(directory: Path, suffix: str) -> dict[int, str]:
    """``{pid: text}`` of the ``<pid>.<suffix>`` files children wrote."""
    return {int(p.stem): p.read_text() for p in directory.glob(f"*.{suffix}")}


def alive(pid: int) -> bool:
    """True while ``pid`` runs (a zombie waiting to be reaped counts as dead)."""
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def child_env(directory: Path) -> dict[str, str]:
    """The environment for a ``troupe run`` root whose children note into ``directory``."""
    env = dict(os.environ)
    env["TROUPE_TEST_DIR"] = str(directory)
    env["PYTHONPATH"] = os.pathsep.join([str(HERE), env.get("PYTHONPATH", "")])
    return env
