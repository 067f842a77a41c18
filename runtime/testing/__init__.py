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

from .faults import (
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
from .simloop import SimulatedLoop, SimulationStalled
from .simulation import Simulation, SimulationFailed, replay, replay_call, simulate
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
    "SimulationStalled",
    "Trace",
    "TraceEvent",
    "replay",
    "replay_call",
    "simulate",
]
