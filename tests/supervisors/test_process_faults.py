"""Fault interleavings on a real process tree: batches of simultaneous kill -9s.

Whatever the order in which the supervisor learns of the deaths, after each
batch every child runs again, exactly the children the strategy names were
replaced, and at the end nothing is left running.
"""

from __future__ import annotations

import asyncio
import os
import signal
import sys
from pathlib import Path

from hypothesis import given, settings
from hypothesis import strategies as st

HERE = Path(__file__).resolve().parent
if str(HERE) not in sys.path:
    sys.path.insert(0, str(HERE))

from process_tree_helpers import alive, eventually  # noqa: E402

from troupe.supervisors import Backoff, ChildState, ProcessSpec, ProcessSupervisor  # noqa: E402

CHILDREN = 3
# real processes are slow to start: a sixth of the profile's examples (5 in ci, 83 in deep)
EXAMPLES = max(2, settings.default.max_examples // 6)


def replaced(strategy: str, victims: set[int]) -> set[int]:
    if strategy == "one_for_all":
        return set(range(CHILDREN))
    if strategy == "rest_for_one":
        return set(range(min(victims), CHILDREN))
    return victims


async def exercise(strategy: str, batches: list[set[int]]) -> None:
    tree = ProcessSupervisor(
        [ProcessSpec("process_tree_targets:build", count=CHILDREN, shutdown=2.0)],
        strategy=strategy,
        backoff=Backoff(initial=0.01, maximum=0.05, jitter="full"),
        max_restarts=100,
        within=60,
    )
    seen: set[int] = set()
    await tree.start()
    try:
        for victims in batches:
            await eventually(lambda: all(s.state is ChildState.RUNNING for s in tree.status()))
            before = [s.pid for s in tree.status()]
            seen.update(p for p in before if p is not None)
            for index in victims:
                os.kill(before[index], signal.SIGKILL)  # type: ignore[arg-type]
            expected = replaced(strategy, victims)

            def recovered(before: list[int | None] = before, expected: set[int] = expected) -> bool:
                now = tree.status()
                return all(s.state is ChildState.RUNNING for s in now) and all(
                    (now[i].pid != before[i]) == (i in expected) for i in range(CHILDREN)
                )

            await eventually(recovered)
        seen.update(s.pid for s in tree.status() if s.pid is not None)
    finally:
        code = await tree.stop()
    assert code == 0
    assert not any(alive(pid) for pid in seen)


@settings(max_examples=EXAMPLES)
@given(
    strategy=st.sampled_from(["one_for_one", "one_for_all", "rest_for_one"]),
    batches=st.lists(
        st.sets(st.integers(0, CHILDREN - 1), min_size=1, max_size=CHILDREN),
        min_size=1,
        max_size=3,
    ),
)
def test_every_batch_of_kills_is_repaired_by_the_strategy(
    strategy: str, batches: list[set[int]]
) -> None:
    asyncio.run(exercise(strategy, batches))
