"""``explore``: let hypothesis search seeds and fault plans for a failing run of a scenario.

>>> from troupe.testing import explore
>>> async def scenario(sim):
...     assert sim.seed >= 0
>>> explore(scenario, max_examples=5)

On failure it raises the :class:`~troupe.testing.SimulationFailed` of the
smallest failing example hypothesis found: seed, plan and the replay call.
"""

from __future__ import annotations

import logging
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from .fault_plan import FaultPlan
from .simulation import Scenario, simulate
from .strategies import seeds

logger = logging.getLogger(__name__)


def explore(
    scenario: Scenario[Any],
    *,
    faults: st.SearchStrategy[FaultPlan] | None = None,
    max_examples: int = 50,
    derandomize: bool = False,
    max_time: float | None = None,
) -> None:
    """Run ``scenario`` under up to ``max_examples`` drawn (seed, plan) pairs.

    ``faults`` draws the plans (see :func:`~troupe.testing.strategies.fault_plans`;
    default: no faults, only interleavings). ``derandomize`` makes the search
    itself repeatable (the same examples every time, as CI wants); ``max_time``
    is passed to :func:`~troupe.testing.simulate`.
    """
    plans = faults if faults is not None else st.just(FaultPlan())

    @settings(
        max_examples=max_examples,
        deadline=None,
        derandomize=derandomize,
        database=None,
        suppress_health_check=list(HealthCheck),
    )
    @given(seed=seeds(), plan=plans)
    def search(seed: int, plan: FaultPlan) -> None:
        simulate(scenario, seed=seed, faults=plan, max_time=max_time)

    search()


__all__ = ["explore"]
