"""Whole process trees under ``troupe run``: signals, giving up, and no orphans."""

from __future__ import annotations

import signal
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
if str(HERE) not in sys.path:
    sys.path.insert(0, str(HERE))

from process_tree_helpers import alive, child_env, notes, wait_sync  # noqa: E402
from process_tree_targets import WORK_ITEMS  # noqa: E402

DEADLINE = 5.0


def troupe_run(target: str, tmp_path: Path, *options: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "troupe", "run", target, *options],
        cwd=HERE,
        env=child_env(tmp_path),
        stderr=subprocess.PIPE,
        text=True,
    )


def test_sigterm_drains_every_child_and_the_root_exits_0_within_the_deadline(
    tmp_path: Path,
) -> None:
    root = troupe_run(
        "process_tree_targets:busy",
        tmp_path,
        "--processes=2",
        f"--shutdown-timeout={DEADLINE}",
    )
    try:
        wait_sync(lambda: len(notes(tmp_path, "up")) == 2)
        pids = sorted(notes(tmp_path, "up"))
        root.send_signal(signal.SIGUSR1)  # log the tree
        root.send_signal(signal.SIGTERM)
        _, log = root.communicate(timeout=DEADLINE + 5)
    finally:
        root.kill()
    assert root.returncode == 0, log
    # every child handled all queued work before it exited
    assert notes(tmp_path, "drained") == {pid: str(WORK_ITEMS) for pid in pids}
    assert not any(alive(pid) for pid in pids)
    assert "received SIGTERM" in log
    for name, pid in zip(["busy-0", "busy-1"], pids, strict=True):
        assert f"{name}[{pid}] " in log  # log lines name the process
        assert f"{name}[{pid}]/worker process_tree_targets: first item" in log  # and the actor
        assert f"{name}[{pid}]/worker process_tree_targets: handled {WORK_ITEMS}" in log
        assert f"pid {pid}" in log  # the SIGUSR1 dump lists it
    assert "stopped cleanly" in log


def test_a_child_that_keeps_crashing_on_start_makes_the_tree_exit_non_zero(
    tmp_path: Path,
) -> None:
    root = troupe_run(
        "process_tree_targets:crash_on_start",
        tmp_path,
        "--max-restarts=2",
        "--within=60",
        "--backoff=0.02",
    )
    _, log = root.communicate(timeout=60)
    assert root.returncode == 1
    assert log.count("RuntimeError: database is unreachable") == 3  # start + 2 restarts
    assert "child process 'crash_on_start-0'" in log
    assert "exceeded the restart intensity (2 restarts within 60 s)" in log


def test_killing_the_root_leaves_no_child_behind(tmp_path: Path) -> None:
    root = troupe_run(
        "process_tree_targets:build", tmp_path, "--processes=2", "--shutdown-timeout=1"
    )
    try:
        wait_sync(lambda: len(notes(tmp_path, "up")) == 2)
        pids = sorted(notes(tmp_path, "up"))
        root.send_signal(signal.SIGKILL)
        root.wait(timeout=10)
    finally:
        root.kill()
        root.communicate()
    wait_sync(lambda: not any(alive(pid) for pid in pids), timeout=15)
    # they saw the parent go and drained on the way out
    assert sorted(notes(tmp_path, "drained")) == pids
