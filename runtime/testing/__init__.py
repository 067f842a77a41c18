"""``troupe.testing``: deterministic simulation and property-based fault injection.

Run a scenario on virtual time with a seeded scheduler (one exact
interleaving per seed), inject faults from a printable :class:`FaultPlan`,
let hypothesis search seeds and plans, and replay any failure from the line
its report prints.

>>> from troupe.testing import Crash, FaultPlan, simulate
>>> async def scenario(sim):
...     return sim.seed
>>> simulate(scenario, seed=5, faults=FaultPlan(Crash("worker", at=3))).result
5
"""

from .exploring import explore
from .fault_plan import (
    Crash,
    Delay,
    Disconnect,
    Drop,
    Duplicate,
    Fault,
    FaultPlan,
    InjectedFault,
    Redeliver,
)
from .injector import FaultInjector
from .invariants import exactly_once, no_effect_twice, no_message_lost, tree_healthy
from .machine import SimulationMachine
from .simloop import SimulatedLoop, SimulationStalled
from .simulation import (
    Simulation,
    SimulationFailed,
    current_simulation,
    replay,
    replay_call,
    simulate,
)
from .strategies import fault_plans, faults, seeds
from .trace import Trace, TraceEvent

__all__ = [
    "Crash",
    "Delay",
    "Disconnect",
    "Drop",
    "Duplicate",
    "Fault",
    "FaultInjector",
    "FaultPlan",
    "InjectedFault",
    "Redeliver",
    "SimulatedLoop",
    "Simulation",
    "SimulationFailed",
    "SimulationMachine",
    "SimulationStalled",
    "Trace",
    "TraceEvent",
    "current_simulation",
    "exactly_once",
    "explore",
    "fault_plans",
    "faults",
    "no_effect_twice",
    "no_message_lost",
    "replay",
    "replay_call",
    "seeds",
    "simulate",
    "tree_healthy",
]
