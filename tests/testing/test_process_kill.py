"""kill_child: a kill -9 injected into a real process tree is recovered by its supervisor."""

from __future__ import annotations

import asyncio
import random
import signal
import sys
from pathlib import Path

SUPERVISOR_TESTS = Path(__file__).resolve().parents[1] / "supervisors"
if str(SUPERVISOR_TESTS) not in sys.path:
    sys.path.insert(0, str(SUPERVISOR_TESTS))

from process_tree_helpers import alive, eventually  # noqa: E402

from troupe.supervisors import Backoff, ChildState, ProcessSpec, ProcessSupervisor  # noqa: E402
from troupe.supervisors.testing_faults import kill_child  # noqa: E402


def test_kill_child_kills_a_matching_running_child_and_the_tree_restarts_it() -> None:
    async def scenario() -> None:
        tree = ProcessSupervisor(
            [ProcessSpec("process_tree_targets:build", count=2, shutdown=2.0)],
            backoff=Backoff(initial=0.01, maximum=0.05),
        )
        await tree.start()
        try:
            await eventually(lambda: all(s.state is ChildState.RUNNING for s in tree.status()))
            before = {s.name: s.pid for s in tree.status()}
            assert kill_child(tree, "no-such-*") is None
            killed = kill_child(tree, "*", rng=random.Random(1), sig=signal.SIGKILL)
            assert killed is not None
            name, pid = killed
            assert before[name] == pid
            await eventually(lambda: not alive(pid))

            def replaced() -> bool:
                now = {s.name: s for s in tree.status()}
                return now[name].state is ChildState.RUNNING and now[name].pid != pid

            await eventually(replaced)
            others = {n: p for n, p in before.items() if n != name}
            assert {s.name: s.pid for s in tree.status() if s.name != name} == others
            assert next(s for s in tree.status() if s.name == name).restarts == 1
        finally:
            assert await tree.stop() == 0

    asyncio.run(scenario())
