"""``SimulationMachine``: a hypothesis ``RuleBasedStateMachine`` whose steps run in a simulation.

Each example starts a :class:`~troupe.testing.Simulation` with a drawn seed
and fault plan (``faults``: a strategy, class attribute), runs ``setup()``
on it, then the rules; ``self.run(awaitable)`` runs a step on the simulated
loop (a coroutine, or a function called on the loop: ``self.run(lambda:
ref.ask(m))``); ``cleanup()`` runs at the end. A failing step's exception carries the
seed and plan as a note; hypothesis prints the steps that reproduce it.

>>> from hypothesis import strategies as st
>>> from hypothesis.stateful import rule
>>> from troupe import Actor, ActorSystem
>>> class Counter(Actor):
...     def __init__(self):
...         self.n = 0
...     def receive(self, message):
...         self.n += message
...         return self.n
>>> class Counting(SimulationMachine):
...     async def setup(self):
...         self.system = ActorSystem(metrics=False)
...         self.system.start()
...         self.counter, self.total = self.system.spawn(Counter), 0
...     async def cleanup(self):
...         await self.system.shutdown()
...     @rule(n=st.integers(0, 5))
...     def add(self, n):
...         self.total += n
...         assert self.run(lambda: self.counter.ask(n)) == self.total
>>> Counting.TestCase.settings = settings(max_examples=3, stateful_step_count=5)
>>> Counting.TestCase("runTest").runTest()
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import Any, ClassVar

from hypothesis import settings  # noqa: F401 - the docstring example uses it
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize

from .fault_plan import FaultPlan
from .simulation import Simulation
from .strategies import seeds

logger = logging.getLogger(__name__)


class SimulationMachine(RuleBasedStateMachine):
    """Base for stateful tests of actor systems on a simulated loop.

    Override ``setup``/``cleanup`` (``async def``), write rules and invariants
    as usual, and run coroutines with ``self.run``. Set ``faults`` to a
    strategy of :class:`FaultPlan` to inject faults (default: none); ``fifo =
    True`` keeps asyncio's order (virtual time without seeded interleavings). Build
    the system in ``setup`` (``self.draw(strategy)`` draws its shape), not in
    an ``@initialize`` rule of your own: hypothesis runs initialize rules in
    any order, and the simulation must exist first.
    """

    faults: ClassVar[st.SearchStrategy[FaultPlan]] = st.just(FaultPlan())
    #: True keeps asyncio's first-in first-out order (virtual time only, the seed unused)
    fifo: ClassVar[bool] = False

    def __init__(self) -> None:
        super().__init__()
        self.sim: Simulation[Any] | None = None
        self.data: st.DataObject | None = None

    @initialize(seed=seeds(), data=st.data())
    def start_simulation(self, seed: int, data: st.DataObject) -> None:
        """Draw the plan, open the simulation and run ``setup``."""
        self.data = data
        plan = data.draw(type(self).faults, label="faults")
        self.sim = Simulation(seed, plan, fifo=type(self).fifo)
        self.run(self.setup())

    def draw(self, strategy: st.SearchStrategy[Any], label: str | None = None) -> Any:
        """Draw a value in ``setup`` (the shape of the system under test, say)."""
        if self.data is None:
            raise RuntimeError("draw() works from setup() on (start_simulation runs first)")
        return self.data.draw(strategy, label=label)

    async def setup(self) -> None:
        """Start the system under test (runs on the simulated loop)."""

    async def cleanup(self) -> None:
        """Stop it (runs on the simulated loop at the end of each example)."""

    def run(self, work: Awaitable[Any] | Callable[[], Any]) -> Any:
        """Run ``work`` on the simulated loop (see :meth:`Simulation.run
        <troupe.testing.Simulation.run>`); a failure notes the seed and plan."""
        sim = self.sim
        if sim is None:
            raise RuntimeError("the simulation is not started (start_simulation runs first)")
        try:
            return sim.run(work)
        except BaseException as exc:
            exc.add_note(f"simulation {sim.describe()}")
            raise

    def teardown(self) -> None:
        sim, self.sim = self.sim, None
        if sim is None:
            return
        try:
            sim.run(self.cleanup())
        finally:
            sim.close()


__all__ = ["SimulationMachine"]
