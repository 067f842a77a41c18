"""ProcessSupervisor on real child processes: restarts, strategies, backoff, stop, status."""

from __future__ import annotations

import os
import signal
import sys
import time
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent
if str(HERE) not in sys.path:
    sys.path.insert(0, str(HERE))

from process_tree_helpers import alive, eventually, notes  # noqa: E402

from troupe.supervisors import Backoff  # noqa: E402
from troupe.supervisors.process_hooks import ProcessHooks  # noqa: E402
from troupe.supervisors.process_spec import ProcessSpec  # noqa: E402
from troupe.supervisors.process_supervisor import (  # noqa: E402
    EXIT_FAILED,
    EXIT_OK,
    EXIT_UNCLEAN_STOP,
    ChildState,
    ChildStatus,
    ProcessSupervisor,
)

DELAY = 0.5
STEADY = Backoff(initial=DELAY, maximum=DELAY, jitter="none")
QUICK = Backoff(initial=0.02, maximum=0.02, jitter="none")


@pytest.fixture
def note_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("TROUPE_TEST_DIR", str(tmp_path))
    monkeypatch.syspath_prepend(str(HERE))
    return tmp_path


def running(tree: ProcessSupervisor) -> bool:
    return all(s.state is ChildState.RUNNING for s in tree.status())


async def kill_one(tree: ProcessSupervisor, index: int) -> tuple[list[ChildStatus], float]:
    """Wait until every child runs, SIGKILL child ``index``; the statuses before, the time."""
    await eventually(lambda: running(tree))
    before = tree.status()
    pid = before[index].pid
    assert pid is not None
    killed_at = time.monotonic()
    os.kill(pid, signal.SIGKILL)
    return before, killed_at


async def restarted(tree: ProcessSupervisor, indexes: list[int], before: list[ChildStatus]) -> None:
    def done() -> bool:
        now = tree.status()
        return all(now[i].pid not in (None, before[i].pid) for i in indexes) and running(tree)

    await eventually(done)


async def test_kill_9_restarts_the_child_after_the_backoff_and_leaves_siblings_alone(
    note_dir: Path,
) -> None:
    tree = ProcessSupervisor(
        [ProcessSpec("process_tree_targets:build", count=3, shutdown=2.0)],
        strategy="one_for_one",
        backoff=STEADY,
        within=60,
    )
    await tree.start()
    try:
        before, killed_at = await kill_one(tree, 1)
        await eventually(lambda: tree.status()[1].state is ChildState.BACKOFF)
        waiting = tree.status()[1]
        assert waiting.pid is None
        assert waiting.last_exit == -signal.SIGKILL
        assert waiting.restart_in is not None and 0 < waiting.restart_in <= DELAY
        await eventually(lambda: tree.status()[1].pid is not None)
        assert time.monotonic() - killed_at >= DELAY  # not before the backoff delay
        await restarted(tree, [1], before)
        after = tree.status()
        assert [s.restarts for s in after] == [0, 1, 0]
        assert after[0].pid == before[0].pid and after[2].pid == before[2].pid
        assert not alive(before[1].pid)  # type: ignore[arg-type]
        assert len(notes(note_dir, "up")) == 4
    finally:
        code = await tree.stop()
    assert code == EXIT_OK
    assert all(s.state is ChildState.STOPPED for s in tree.status())


async def test_one_for_all_restarts_every_sibling(note_dir: Path) -> None:
    tree = ProcessSupervisor(
        [
            ProcessSpec("process_tree_targets:build", name="first", shutdown=2.0),
            ProcessSpec("process_tree_targets:build", name="second", count=2, shutdown=2.0),
        ],
        strategy="one_for_all",
        backoff=QUICK,
        within=60,
    )
    await tree.start()
    try:
        before, _ = await kill_one(tree, 2)
        await restarted(tree, [0, 1, 2], before)
        after = tree.status()
        assert [s.name for s in after] == ["first-0", "second-0", "second-1"]
        assert [s.restarts for s in after] == [1, 1, 1]
        assert not any(alive(s.pid) for s in before if s.pid is not None)
        drained = notes(note_dir, "drained")
        # the siblings were drained (SIGTERM), the victim was not: it died of SIGKILL
        assert set(drained) == {before[0].pid, before[1].pid}
    finally:
        assert await tree.stop() == EXIT_OK


async def test_rest_for_one_restarts_the_child_and_those_started_after_it(note_dir: Path) -> None:
    tree = ProcessSupervisor(
        [ProcessSpec("process_tree_targets:build", count=3, shutdown=2.0)],
        strategy="rest_for_one",
        backoff=QUICK,
        within=60,
    )
    await tree.start()
    try:
        before, _ = await kill_one(tree, 1)
        await restarted(tree, [1, 2], before)
        after = tree.status()
        assert after[0].pid == before[0].pid
        assert [s.restarts for s in after] == [0, 1, 1]
    finally:
        assert await tree.stop() == EXIT_OK


async def test_a_child_that_crashes_on_start_makes_the_tree_give_up(note_dir: Path) -> None:
    tree = ProcessSupervisor(
        [
            ProcessSpec("process_tree_targets:build", name="healthy", shutdown=2.0),
            ProcessSpec("process_tree_targets:crash_on_start", shutdown=1.0),
        ],
        backoff=QUICK,
        max_restarts=2,
        within=60,
    )
    await tree.start()
    code = await tree.wait()
    assert code == EXIT_FAILED
    assert tree.failure is not None
    assert tree.failure.child == "crash_on_start-0"
    assert "'crash_on_start-0'" in str(tree.failure)
    assert "restart intensity" in str(tree.failure)
    crasher = tree.status()[1]
    assert crasher.restarts == 2 and crasher.last_exit == 1
    # the healthy sibling was drained and stopped, not left behind
    healthy_pids = list(notes(note_dir, "up"))
    assert len(healthy_pids) == 1
    assert list(notes(note_dir, "drained")) == healthy_pids
    assert not alive(healthy_pids[0])


async def test_a_child_that_does_not_drain_in_time_is_killed_and_the_exit_is_non_zero(
    note_dir: Path,
) -> None:
    tree = ProcessSupervisor(
        [ProcessSpec("process_tree_targets:stubborn", shutdown=0.3, kill_grace=0.3)]
    )
    await tree.start()
    await eventually(lambda: len(notes(note_dir, "up")) == 1)
    assert await tree.stop() == EXIT_UNCLEAN_STOP
    assert tree.status()[0].last_exit == -signal.SIGKILL


async def test_a_child_stopped_while_its_tree_is_still_starting_exits_cleanly(
    note_dir: Path,
) -> None:
    tree = ProcessSupervisor([ProcessSpec("process_tree_targets:slow_start", shutdown=1.0)])
    await tree.start()
    await eventually(lambda: len(notes(note_dir, "up")) == 1)
    assert tree.status()[0].state is ChildState.STARTING
    assert await tree.stop() == EXIT_OK
    assert tree.status()[0].last_exit == 0


async def test_an_actor_root_ends_its_process_and_transient_children_stay_down(
    note_dir: Path,
) -> None:
    tree = ProcessSupervisor(
        [ProcessSpec("process_tree_targets:Finisher", count=2, restart="transient")],
        backoff=QUICK,
    )
    await tree.start()
    assert await tree.wait() == EXIT_OK
    statuses = tree.status()
    assert [(s.state, s.last_exit, s.restarts) for s in statuses] == [
        (ChildState.EXITED, 0, 0),
        (ChildState.EXITED, 0, 0),
    ]


async def test_a_failing_actor_root_exits_non_zero_and_is_restarted(note_dir: Path) -> None:
    tree = ProcessSupervisor(
        [ProcessSpec("process_tree_targets:BrokenRoot", restart="transient")],
        backoff=QUICK,
        max_restarts=1,
    )
    await tree.start()
    assert await tree.wait() == EXIT_FAILED
    assert tree.failure is not None and tree.failure.child == "BrokenRoot-0"
    assert tree.status()[0].restarts == 1


async def test_a_temporary_child_is_never_restarted(note_dir: Path) -> None:
    tree = ProcessSupervisor(
        [ProcessSpec("process_tree_targets:BrokenRoot", restart="temporary")], backoff=QUICK
    )
    await tree.start()
    assert await tree.wait() == EXIT_FAILED  # it ended abnormally and stays down
    assert tree.failure is None
    (status,) = tree.status()
    assert (status.state, status.restarts, status.last_exit) == (ChildState.EXITED, 0, 1)


@pytest.mark.parametrize("target", ["make_worker_tree", "supervised"])
async def test_factory_and_supervisor_targets_build_their_tree_in_the_child(
    note_dir: Path, target: str
) -> None:
    tree = ProcessSupervisor([ProcessSpec(f"process_tree_targets:{target}")])
    await tree.start()
    try:
        await eventually(lambda: running(tree))
    finally:
        assert await tree.stop() == EXIT_OK
    assert len(notes(note_dir, "drained")) == 1  # its worker drained


class Recorder(ProcessHooks):
    def __init__(self) -> None:
        self.events: list[str] = []

    def child_environment(self) -> dict[str, str]:
        return {"TROUPE_TEST_HOOKED": "yes"}

    def tree_starting(self, tree: ProcessSupervisor) -> None:
        self.events.append("starting")

    def child_started(self, tree: ProcessSupervisor, child: ChildStatus) -> None:
        self.events.append(f"started {child.name}")

    def child_exited(self, tree: ProcessSupervisor, child: ChildStatus, returncode: int) -> None:
        self.events.append(f"exited {child.name} {returncode}")

    def tree_stopped(self, tree: ProcessSupervisor) -> None:
        self.events.append("stopped")


async def test_status_describe_and_hooks(note_dir: Path) -> None:
    hooks = Recorder()
    tree = ProcessSupervisor(
        [ProcessSpec("process_tree_targets:build", name="w", count=2, shutdown=2.0)],
        hooks=[hooks],
        name="shop",
    )
    await tree.start()
    try:
        await eventually(lambda: running(tree))
        pids = [s.pid for s in tree.status()]
        text = tree.describe()
        assert "process tree 'shop'" in text
        for name, pid in zip(["w-0", "w-1"], pids, strict=True):
            assert name in text and f"pid {pid}" in text
    finally:
        assert await tree.stop() == EXIT_OK
    events = hooks.events
    assert events[:3] == ["starting", "started w-0", "started w-1"]
    assert sorted(events[3:5]) == ["exited w-0 0", "exited w-1 0"]
    assert events[5:] == ["stopped"]
    assert all(text.endswith(" yes") for text in notes(note_dir, "up").values())


async def test_stop_is_ordered_spec_by_spec_in_reverse_start_order(note_dir: Path) -> None:
    """The later spec drains completely before the earlier one is told to stop (OTP order);
    the processes of one spec drain side by side."""
    tree = ProcessSupervisor(
        [
            ProcessSpec("process_tree_targets:busy", count=2, shutdown=5.0, name="first"),
            ProcessSpec("process_tree_targets:busy", count=2, shutdown=5.0, name="second"),
        ],
        backoff=QUICK,
    )
    await tree.start()
    await eventually(lambda: running(tree) and len(notes(note_dir, "up")) == 4)
    pids = {status.name: status.pid for status in tree.status()}
    assert await tree.stop() == EXIT_OK

    def drained_at(name: str) -> int:
        return (note_dir / f"{pids[name]}.drained").stat().st_mtime_ns

    second = [drained_at("second-0"), drained_at("second-1")]
    first = [drained_at("first-0"), drained_at("first-1")]
    assert max(second) <= min(first)
    assert all(n == "20" for n in notes(note_dir, "drained").values())
