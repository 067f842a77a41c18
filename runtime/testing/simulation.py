"""``simulate``: run a scenario on a :class:`SimulatedLoop` with a fault plan, report failures
with the seed, the plan and a one-line replay call.

A scenario is ``async def scenario(sim: Simulation) -> Any``. Every
ActorSystem it starts on the simulated loop traces each handled message in
``sim.trace`` and gets the plan's actor faults (through the loop's handler
hook); the module-level ``random`` is seeded for the run (backoff jitter),
and ``sim.rng`` is a seeded source for the scenario's own choices.

>>> from troupe import Actor, ActorSystem
>>> class Echo(Actor):
...     def receive(self, message):
...         return message
>>> async def scenario(sim):
...     async with ActorSystem(metrics=False) as system:
...         echo = system.spawn(Echo, name="echo")
...         return await echo.ask("hi")
>>> run = simulate(scenario, seed=3)
>>> run.result, run.trace.events[0].line()
('hi', "t=0 echo handle 'hi'")
"""

from __future__ import annotations

import asyncio
import importlib
import inspect
import logging
import random
from collections.abc import Awaitable, Callable
from typing import Any, Generic, TypeVar

from .fault_plan import FaultPlan
from .injector import FaultInjector
from .simloop import SimulatedLoop
from .trace import Trace

logger = logging.getLogger(__name__)

T = TypeVar("T")

Scenario = Callable[["Simulation[Any]"], Awaitable[T]]


class SimulationFailed(AssertionError):
    """A simulated run failed; ``seed`` and ``faults`` replay it, ``replay_call`` says how."""

    def __init__(self, message: str, seed: int, faults: FaultPlan, replay_call: str) -> None:
        super().__init__(message)
        self.seed = seed
        self.faults = faults
        self.replay_call = replay_call


class Simulation(Generic[T]):
    """One simulated run: its seed, fault plan, loop, trace and injector.

    Use :func:`simulate`; or ``open()``, ``run(awaitable)`` (as often as needed)
    and ``close()`` to drive a run step by step (the state machine base does).
    """

    def __init__(
        self,
        seed: int = 0,
        faults: FaultPlan | None = None,
        *,
        fifo: bool = False,
        max_time: float | None = None,
    ) -> None:
        self.seed = seed
        self.max_time = max_time
        self.faults = faults if faults is not None else FaultPlan()
        self.fifo = fifo
        self.trace = Trace()
        self.rng = random.Random(seed)
        self.result: T | None = None
        self.loop: SimulatedLoop | None = None
        self.injector = FaultInjector(self.faults, seed=seed, trace=self.trace)
        self._random_state: object = None

    @property
    def now(self) -> float:
        """The virtual time."""
        return self.loop.time() if self.loop is not None else 0.0

    def note(self, actor: str, detail: Any, kind: str = "note") -> None:
        """Put an event of the scenario's own in the trace."""
        self.trace.record(self.now, actor, kind, detail)

    def open(self) -> SimulatedLoop:
        """Create the loop (idempotent) and seed the global ``random`` for the run."""
        if self.loop is None:
            loop = SimulatedLoop(self.seed, fifo=self.fifo, max_time=self.max_time)
            loop.troupe_handler_hook = self.injector.hook
            loop.simulation = self
            self.trace.loop_steps = lambda: loop.steps
            self.injector.now = loop.time
            self._random_state = random.getstate()
            random.seed(self.seed)
            self.loop = loop
        return self.loop

    def run(self, work: Awaitable[Any] | Callable[[], Any]) -> Any:
        """Run ``work`` to completion on the simulated loop: an awaitable, or a function
        called on the loop (``sim.run(lambda: ref.ask(m))``; an awaitable it returns is
        awaited)."""
        loop = self.open()
        asyncio.set_event_loop(loop)
        try:
            return loop.run_until_complete(_as_coroutine(work))
        finally:
            asyncio.set_event_loop(None)

    def close(self) -> None:
        """Cancel what is left on the loop, close it and restore the global ``random``."""
        loop, self.loop = self.loop, None
        if loop is None:
            return
        try:
            pending = [t for t in asyncio.all_tasks(loop) if not t.done()]
            for task in pending:
                task.cancel()
            if pending:
                loop.run_until_complete(asyncio.gather(*pending, return_exceptions=True))
            loop.run_until_complete(loop.shutdown_asyncgens())
        finally:
            loop.close()
            random.setstate(self._random_state)  # type: ignore[arg-type]

    def describe(self) -> str:
        """Seed and fault plan, as a failure report prints them."""
        return f"seed={self.seed} faults={self.faults!r}"


def current_simulation() -> Simulation[Any] | None:
    """The simulation whose loop is running in this thread, or None (a real run)."""
    try:
        loop = asyncio.get_running_loop()
    except RuntimeError:
        return None
    sim = getattr(loop, "simulation", None)
    return sim if isinstance(sim, Simulation) else None


async def _as_coroutine(work: Awaitable[Any] | Callable[[], Any]) -> Any:
    if callable(work):
        work = work()
        if not inspect.isawaitable(work):
            return work
    return await work


#: What a replay call needs first: every name it uses (``replay``, ``simulate``,
#: ``FaultPlan`` and the faults) is exported by ``troupe.testing``.
REPLAY_IMPORT = "from troupe.testing import *"


def replay_call(scenario: Callable[..., Any], seed: int, faults: FaultPlan) -> str:
    """The one-line Python call that replays a run of ``scenario``.

    It uses only names that ``from troupe.testing import *`` brings
    (:data:`REPLAY_IMPORT`); a failure report prints the two on one line, so the
    line runs as pasted into a fresh interpreter. A scenario defined in a function
    or in ``__main__`` is named bare (``simulate(scenario, ...)``): it must be
    defined where the line runs.
    """
    module = getattr(scenario, "__module__", "?")
    qualname = getattr(scenario, "__qualname__", getattr(scenario, "__name__", "?"))
    if "<locals>" in qualname or module == "__main__":
        target = qualname.rsplit(".", 1)[-1]
        return f"simulate({target}, seed={seed}, faults={faults!r})"
    return f"replay({module + ':' + qualname!r}, seed={seed}, faults={faults!r})"


def simulate(
    scenario: Scenario[T],
    *,
    seed: int = 0,
    faults: FaultPlan | None = None,
    fifo: bool = False,
    max_time: float | None = None,
) -> Simulation[T]:
    """Run ``scenario(sim)`` once under ``seed`` and ``faults``; returns the finished run
    (``result``, ``trace``, ``injector.injected``). ``max_time`` (virtual seconds)
    fails a run that would go on longer (a livelock); ``fifo`` keeps asyncio's order.

    Any exception of the scenario is raised as :class:`SimulationFailed`, whose
    message gives the seed, the plan, a one-line replay call and the last events.
    """
    sim: Simulation[T] = Simulation(seed, faults, fifo=fifo, max_time=max_time)
    try:
        sim.result = sim.run(scenario(sim))
    except Exception as exc:
        call = replay_call(scenario, seed, sim.faults)
        message = (
            f"simulation failed: {type(exc).__name__}: {exc}\n"
            f"  seed: {seed}\n  faults: {sim.faults!r}\n  replay: {REPLAY_IMPORT}; {call}\n"
            f"  last events:\n{_indent(sim.trace.tail(12))}"
        )
        raise SimulationFailed(message, seed, sim.faults, call) from exc
    finally:
        sim.close()
    return sim


def replay(
    target: str | Scenario[T],
    *,
    seed: int,
    faults: FaultPlan | None = None,
    max_time: float | None = None,
) -> Simulation[T]:
    """Run a scenario again under a reported seed and plan.

    ``target`` is the scenario or its ``"module:qualname"`` (as a report prints it).
    """
    scenario: Any = target
    if isinstance(target, str):
        module_name, _, qualname = target.partition(":")
        scenario = importlib.import_module(module_name)
        for part in qualname.split("."):
            scenario = getattr(scenario, part)
    return simulate(scenario, seed=seed, faults=faults, max_time=max_time)


def _indent(text: str) -> str:
    return "\n".join("    " + line for line in text.splitlines()) or "    (none)"


__all__ = [
    "REPLAY_IMPORT",
    "Scenario",
    "Simulation",
    "SimulationFailed",
    "current_simulation",
    "replay",
    "replay_call",
    "simulate",
]
