"""A transient child process is restarted after an abnormal exit, and a death by a
signal is one; a stop it was asked for (SIGTERM: it drains and exits 0) is not."""

from __future__ import annotations

import os
import signal
import sys
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent
if str(HERE) not in sys.path:
    sys.path.insert(0, str(HERE))

from process_tree_helpers import alive, eventually  # noqa: E402

from troupe.supervisors import Backoff  # noqa: E402
from troupe.supervisors.process_spec import ProcessSpec  # noqa: E402
from troupe.supervisors.process_supervisor import (  # noqa: E402
    EXIT_OK,
    ChildState,
    ProcessSupervisor,
)

QUICK = Backoff(initial=0.02, maximum=0.02, jitter="none")


@pytest.fixture
def note_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("TROUPE_TEST_DIR", str(tmp_path))
    monkeypatch.syspath_prepend(str(HERE))
    return tmp_path


def transient_tree() -> ProcessSupervisor:
    return ProcessSupervisor(
        [ProcessSpec("process_tree_targets:build", restart="transient", shutdown=2.0)],
        backoff=QUICK,
        within=60,
    )


async def running_pid(tree: ProcessSupervisor) -> int:
    await eventually(lambda: tree.status()[0].state is ChildState.RUNNING)
    pid = tree.status()[0].pid
    assert pid is not None
    return pid


@pytest.mark.parametrize("sig", [signal.SIGKILL, signal.SIGSEGV, signal.SIGUSR2])
async def test_a_transient_child_killed_by_a_signal_is_restarted(
    note_dir: Path, sig: signal.Signals
) -> None:
    tree = transient_tree()
    await tree.start()
    try:
        first = await running_pid(tree)
        os.kill(first, sig)
        await eventually(lambda: tree.status()[0].pid not in (None, first))
        second = await running_pid(tree)
        status = tree.status()[0]
        assert (status.restarts, status.last_exit) == (1, -sig)
        assert second != first and not alive(first)
    finally:
        assert await tree.stop() == EXIT_OK


async def test_a_transient_child_stopped_with_sigterm_exits_normally_and_stays_down(
    note_dir: Path,
) -> None:
    tree = transient_tree()
    await tree.start()
    pid = await running_pid(tree)
    os.kill(pid, signal.SIGTERM)  # it drains and exits 0: the stop it was asked for
    assert await tree.wait() == EXIT_OK  # every child ended
    status = tree.status()[0]
    assert (status.state, status.restarts, status.last_exit) == (ChildState.EXITED, 0, 0)
