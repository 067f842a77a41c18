"""Hypothesis strategies: seeds and fault plans to search.

>>> from hypothesis import given
>>> from troupe.testing import simulate
>>> from troupe.testing.strategies import fault_plans, seeds
>>> @given(seed=seeds(), plan=fault_plans(actors=["worker-*"], max_faults=2))
... def test_survives(seed, plan):
...     simulate(lambda sim: asyncio.sleep(0), seed=seed, faults=plan)

Hypothesis shrinks a failing plan towards fewer, later and rarer faults and a
smaller seed; the failure report of :func:`~troupe.testing.simulate` then
prints the replay call for the shrunk example.
"""

from __future__ import annotations

import asyncio  # noqa: F401 - used by the docstring example
import logging
from collections.abc import Sequence

from hypothesis import strategies as st

from .fault_plan import Crash, Delay, Disconnect, Drop, Duplicate, Fault, FaultPlan, Redeliver

logger = logging.getLogger(__name__)

ACTOR_FAULTS: tuple[type[Fault], ...] = (Crash, Drop, Delay)
STREAM_FAULTS: tuple[type[Fault], ...] = (Duplicate, Redeliver, Disconnect)


def seeds() -> st.SearchStrategy[int]:
    """Scheduler seeds (they shrink towards 0)."""
    return st.integers(min_value=0, max_value=2**32 - 1)


def faults(
    kind: type[Fault],
    targets: Sequence[str],
    *,
    max_at: int = 20,
    max_p: float = 0.3,
) -> st.SearchStrategy[Fault]:
    """One fault of ``kind`` on one of ``targets``: at a message 1..``max_at``, or with a
    probability up to ``max_p``."""
    if not targets:
        raise ValueError("faults() needs at least one target")
    target = st.sampled_from(list(targets))
    at = st.builds(lambda t, n: (t, n, 0.0), target, st.integers(1, max_at))
    rate = st.builds(
        lambda t, p: (t, None, p),
        target,
        st.floats(min_value=0.01, max_value=max_p, allow_nan=False).map(lambda p: round(p, 3)),
    )
    spec = st.one_of(at, rate)
    if kind is Delay:
        delay = st.sampled_from([0.01, 0.1, 1.0, 5.0])
        return st.builds(lambda s, d: Delay(s[0], at=s[1], p=s[2], seconds=d), spec, delay)
    return spec.map(lambda s: kind(s[0], at=s[1], p=s[2]))


def fault_plans(
    *,
    actors: Sequence[str] = (),
    streams: Sequence[str] = (),
    kinds: Sequence[type[Fault]] | None = None,
    max_faults: int = 3,
    max_at: int = 20,
    max_p: float = 0.3,
) -> st.SearchStrategy[FaultPlan]:
    """Plans of up to ``max_faults`` faults on the given ``actors`` (glob patterns) and
    ``streams``; ``kinds`` limits the fault types (default: every kind that fits a
    given target list). The empty plan is always possible (and what shrinking tries)."""
    if not actors and not streams:
        raise ValueError("fault_plans() needs actors= or streams= to aim at")
    chosen = tuple(kinds) if kinds is not None else ACTOR_FAULTS + STREAM_FAULTS
    options: list[st.SearchStrategy[Fault]] = []
    for kind in chosen:
        targets = actors if kind.scope == "actor" else streams
        if targets:
            options.append(faults(kind, targets, max_at=max_at, max_p=max_p))
    if not options:
        raise ValueError(f"no fault kind of {chosen} fits the targets given")
    return st.lists(st.one_of(options), max_size=max_faults).map(lambda fs: FaultPlan(*fs))


__all__ = ["ACTOR_FAULTS", "STREAM_FAULTS", "fault_plans", "faults", "seeds"]
