"""Helpers of the process-tree tests: polling for a condition, reading what children noted."""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import Callable
from pathlib import Path

import psutil

HERE = Path(__file__).resolve().parent


async def eventually(condition: Callable[[], bool], timeout: float = 20.0) -> None:
    """Wait until ``condition()`` holds; fail the test after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {timeout} s")
        await asyncio.sleep(0.02)


def wait_sync(condition: Callable[[], bool], timeout: float = 20.0) -> None:
    """Blocking :func:`eventually`."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {timeout} s")
        time.sleep(0.02)


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
