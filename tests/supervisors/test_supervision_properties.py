"""Random crash schedules over random supervision trees, checked against a model of OTP.

The model below is written from the rules, not from troupe's policy code:
which siblings restart per strategy and restart type (OTP); a failed child is
restarted at once unless it is in a crash loop (failures in a row with no
message handled between, reset by ``within`` quiet seconds): the first
``max_restarts`` at once, the next ``max_restarts`` after the backoff (with its
quiet-period reset), one more and the supervisor stops its subtree and fails to
its parent; children that exit count in OTP's restart window. After every step the live tree,
the number of instances each child has had, refs kept across in-place
restarts, and the pending mailbox handled by the new instance are compared
with it; after the tree stops, no actor, task or pykka thread may be left.

Each example runs on a seeded simulated loop (``troupe.testing.SimulationMachine``):
the seed orders ready callbacks, so interleavings vary with it and a failure
names the seed that replays it.
"""

from __future__ import annotations

import asyncio
import itertools
import sys
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    invariant,
    precondition,
    rule,
)

sys.path.insert(0, str(Path(__file__).resolve().parent))

import pykka
from supervision_helpers import Journal, ThreadWorker, Worker

from troupe import ActorRef, ActorSystem, State, VirtualClock
from troupe import Child as Handle
from troupe.supervisors import Backoff, ChildSpec, SupervisorSpec, decider
from troupe.testing import SimulationMachine

STRATEGIES = ["one_for_one", "one_for_all", "rest_for_one"]
RESTARTS = ["permanent", "transient", "temporary"]


@dataclass
class Child:
    name: str
    restart: str
    kind: str  # "async", "thread" or "sup"


@dataclass
class ModelSup:
    """What a supervisor should look like: its specs, live children, window and backoff."""

    name: str
    strategy: str
    max_restarts: int
    within: float
    backoff: Backoff
    oops: str  # the directive its decider gives for KeyError
    specs: list[Child]
    children: list[str] = field(default_factory=list)
    times: list[float] = field(default_factory=list)
    attempts: dict[str, list[Any]] = field(default_factory=dict)
    runs: dict[str, list[Any]] = field(default_factory=dict)  # name -> [in a row, last, attempt]

    def fresh(self) -> None:
        """A new instance: every spec started, empty window, no backoff history."""
        self.children = [c.name for c in self.specs]
        self.times = []
        self.attempts = {}
        self.runs = {}

    def spec(self, name: str) -> Child:
        return next(c for c in self.specs if c.name == name)


backoffs = st.one_of(
    st.just(Backoff.none()),
    st.builds(
        lambda initial, growth, span, jitter, reset: Backoff(
            initial=initial,
            maximum=initial * span,
            multiplier=growth,
            jitter=jitter,
            reset_after=reset,
        ),
        st.sampled_from([0.5, 1.0, 2.0]),
        st.sampled_from([1.0, 2.0, 3.0]),
        st.sampled_from([1, 4]),
        st.sampled_from(["none", "full", "equal"]),
        st.sampled_from([3.0, 10.0, 30.0]),
    ),
)


def leaf_specs(draw: Any, names: list[str]) -> list[Child]:
    kinds = st.sampled_from(["async", "async", "async", "thread"])
    count = draw(st.integers(1, len(names)))
    return [Child(n, draw(st.sampled_from(RESTARTS)), draw(kinds)) for n in names[:count]]


def draw_sup(draw: Any, name: str, children: list[Child]) -> ModelSup:
    sup = ModelSup(
        name=name,
        strategy=draw(st.sampled_from(STRATEGIES)),
        max_restarts=draw(st.integers(0, 3)),
        within=draw(st.sampled_from([1.0, 5.0, 20.0])),
        backoff=draw(backoffs),
        oops=draw(st.sampled_from(["resume", "stop", "escalate", "restart"])),
        specs=children,
    )
    sup.fresh()
    return sup


class SupervisionMachine(SimulationMachine):
    async def setup(self) -> None:
        self.clock = VirtualClock()
        self.system = ActorSystem("props", clock=self.clock, shutdown_timeout=0.5)
        self.journal = Journal()
        self.made: Counter[str] = Counter()
        self.failed = False
        self.messages = itertools.count()
        self.sups: dict[str, ModelSup] = {}
        self.changed: set[str] = set()
        self.ran_well: dict[str, bool] = {}  # handled a message since its last failure
        root_children = leaf_specs(self.draw, ["a", "b", "c"])
        if self.draw(st.booleans()):
            sub = draw_sup(self.draw, "sub", leaf_specs(self.draw, ["s1", "s2", "s3"]))
            self.sups["sub"] = sub
            at = self.draw(st.integers(0, len(root_children)))
            root_children.insert(at, Child("sub", "permanent", "sup"))
        self.sups["root"] = draw_sup(self.draw, "root", root_children)
        for sup in self.sups.values():
            for child in sup.specs:
                if child.kind != "sup":
                    self.made[child.name] = 1
        self.system.start()
        self.spec_of(self.sups["root"]).spawn(self.system)
        await self.quiet()

    def spec_of(self, sup: ModelSup) -> SupervisorSpec:
        children: list[ChildSpec] = []
        for child in sup.specs:
            if child.kind == "sup":
                children.append(ChildSpec(self.spec_of(self.sups[child.name]), shutdown=None))
            else:
                factory = ThreadWorker if child.kind == "thread" else Worker
                children.append(
                    ChildSpec(factory, (self.journal,), name=child.name, restart=child.restart)  # type: ignore[arg-type]
                )
        return SupervisorSpec(
            children,
            name=sup.name,
            strategy=sup.strategy,  # type: ignore[arg-type]
            max_restarts=sup.max_restarts,
            within=sup.within,
            backoff=sup.backoff,
            decider=decider({KeyError: sup.oops}),
        )

    async def quiet(self) -> None:
        """Let everything that can happen without virtual time passing happen."""
        calm = 0
        give_up_at = time.monotonic() + 10  # real seconds: thread actors run on real threads
        while time.monotonic() < give_up_at:
            await self.clock.advance(0)
            if self.is_quiet():
                calm += 1
                if calm >= 3:
                    return
            else:
                calm = 0
                await asyncio.sleep(0.001)  # thread actors work in real time
        raise AssertionError("the tree did not settle")

    def is_quiet(self) -> bool:
        current = asyncio.current_task()
        if any(t is not current and not t.done() for t in asyncio.all_tasks()):
            return False
        for ref in self.system.actors():
            cell = self.system.cell_of(ref)
            parked = cell.state is State.SUSPENDED and not cell.mailbox.system
            if not (cell.is_idle() or parked):
                return False
        return True

    def live_leaves(self, kinds: tuple[str, ...] = ("async", "thread")) -> list[str]:
        names = []
        for sup_name in self.live_sups():
            sup = self.sups[sup_name]
            names += [n for n in sup.children if sup.spec(n).kind in kinds]
        return sorted(names)

    def live_sups(self) -> list[str]:
        if self.failed:
            return []
        return ["root"] + [n for n in self.sups["root"].children if n == "sub"]

    def parent_of(self, name: str) -> ModelSup:
        return next(self.sups[s] for s in self.live_sups() if name in self.sups[s].children)

    def refs(self) -> dict[str, ActorRef]:
        return {r.name: r for r in self.system.actors()}

    # -- the model -----------------------------------------------------------------------

    def ended(
        self, sup: ModelSup, name: str, abnormal: bool, now: float, *, failure: bool = False
    ) -> tuple[float, float] | None:
        """Apply the rules to ``name`` ending under ``sup`` (``failure``: it failed, else
        it exited); the bounds of the restart delay."""
        restart = sup.spec(name).restart
        if restart == "temporary" or (restart == "transient" and not abnormal):
            self.drop(sup, name)
            return None
        if failure:
            bounds = self.crash_loop(sup, name, now)
        else:
            sup.times = [t for t in sup.times if t > now - sup.within] + [now]
            if len(sup.times) > sup.max_restarts:
                return self.give_up(sup, now)
            attempt = sup.attempts.setdefault(name, [0, None])
            if attempt[1] is not None and now - attempt[1] >= sup.backoff.reset_after:
                attempt[0] = 0
            bounds = sup.backoff.bounds(attempt[0])
            attempt[0] += 1
            attempt[1] = now
        if bounds is None:
            return self.give_up(sup, now)
        index = sup.children.index(name)
        if sup.strategy == "one_for_all":
            affected = list(sup.children)
        elif sup.strategy == "rest_for_one":
            affected = sup.children[index:]
        else:
            affected = [name]
        for other in affected:
            if other != name and sup.spec(other).restart == "temporary":
                self.drop(sup, other)
            else:
                self.restart(sup, other, new_ref=other == name and not abnormal)
        return bounds

    def crash_loop(self, sup: ModelSup, name: str, now: float) -> tuple[float, float] | None:
        """The delay bounds of a failed child's restart, None past the limit."""
        run = sup.runs.get(name)
        if run is None or self.ran_well.get(name) or now - run[1] >= sup.within:
            run = sup.runs[name] = [0, now, 0, None]
        self.ran_well[name] = False
        run[0] += 1
        run[1] = now
        if run[0] <= sup.max_restarts:
            return (0.0, 0.0)
        if run[0] > 2 * sup.max_restarts:
            return None
        if run[3] is not None and now - run[3] >= sup.backoff.reset_after:
            run[2] = 0
        bounds = sup.backoff.bounds(run[2])
        run[2] += 1
        run[3] = now
        return bounds

    def restart(self, sup: ModelSup, name: str, new_ref: bool) -> None:
        if sup.spec(name).kind == "sup":
            inner = self.sups[name]
            inner.fresh()
            for leaf in inner.children:
                self.made[leaf] += 1
                self.changed.add(leaf)
        else:
            self.made[name] += 1
            if new_ref:
                self.changed.add(name)

    def drop(self, sup: ModelSup, name: str) -> None:
        sup.children.remove(name)
        sup.attempts.pop(name, None)

    def oops(self, sup: ModelSup, name: str, now: float) -> tuple[float, float] | None:
        """A KeyError: the directive the supervisor's decider names."""
        if sup.oops == "resume":
            return None
        if sup.oops == "stop":
            self.drop(sup, name)
            return None
        if sup.oops == "escalate":
            for gone in sup.children:
                self.changed.add(gone)
            sup.children = []
            if sup.name == "root":
                self.failed = True
                return None
            # the parent's decider sees the same exception; a failed supervisor
            # cannot be resumed, so resume means restart for it
            root = self.sups["root"]
            if root.oops in ("resume", "restart"):
                return self.ended(root, sup.name, True, now, failure=True)
            return self.oops(root, sup.name, now)
        return self.ended(sup, name, True, now, failure=True)

    def give_up(self, sup: ModelSup, now: float) -> tuple[float, float] | None:
        for name in sup.children:
            self.changed.add(name)
        sup.children = []
        if sup.name == "root":
            self.failed = True
            return None
        return self.ended(self.sups["root"], sup.name, abnormal=True, now=now, failure=True)

    # -- rules ---------------------------------------------------------------------------

    def step(self, name: str, message: str, extra: int) -> None:
        self.run(self._step(name, message, extra))

    async def _step(self, name: str, message: str, extra: int) -> None:
        before = self.refs()
        self.changed = set()
        now = self.clock.now()
        if message == "oops":
            bounds = self.oops(self.parent_of(name), name, now)
            self.ran_well[name] = False  # a failure, whatever the directive
        else:
            crashed = message == "crash"
            bounds = self.ended(self.parent_of(name), name, crashed, now, failure=crashed)
        target = before[name]
        target.tell(message)
        pending = [next(self.messages) for _ in range(extra)]
        for m in pending:
            target.tell(m)
        await self.quiet()
        deadline = self.clock.next_deadline()
        if bounds is None or bounds[1] == 0:
            assert deadline is None, f"unexpected timer at {deadline}"
        else:
            assert deadline is not None, "a restart with backoff has no timer"
            delay = deadline - now
            low, high = bounds
            assert low - 1e-9 <= delay <= high + 1e-9, (delay, bounds)
            if message != "exit" and name not in self.changed:
                assert Handle.of(target).state is State.SUSPENDED
            await self.clock.advance(delay)
            await self.quiet()
        if self.failed:
            await asyncio.wait_for(self.system.shutdown(), 10)
            return
        after = self.refs()
        for leaf, ref in before.items():
            if leaf in after and leaf not in self.changed and leaf in self.made:
                assert after[leaf] == ref, f"{leaf} lost its ref"
        if message != "exit" and name in after and name not in self.changed and pending:
            seen = [m for n, i, m in self.journal.handled if n == name and i == self.made[name]]
            assert seen[-len(pending) :] == pending, "the pending mailbox was not handled"
        for leaf in self.changed:
            self.ran_well[leaf] = False  # a new actor under that name
        if pending and name in after and name not in self.changed:
            self.ran_well[name] = True  # it handled the pending messages

    @precondition(lambda self: bool(self.live_leaves()))
    @rule(data=st.data(), extra=st.integers(0, 2))
    def crash(self, data: st.DataObject, extra: int) -> None:
        self.step(data.draw(st.sampled_from(self.live_leaves())), "crash", extra)

    @precondition(lambda self: bool(self.live_leaves()))
    @rule(data=st.data(), extra=st.integers(0, 2))
    def raise_key_error(self, data: st.DataObject, extra: int) -> None:
        self.step(data.draw(st.sampled_from(self.live_leaves())), "oops", extra)

    @precondition(lambda self: bool(self.live_leaves(("async",))))
    @rule(data=st.data())
    def exit_normally(self, data: st.DataObject) -> None:
        self.step(data.draw(st.sampled_from(self.live_leaves(("async",)))), "exit", 0)

    @rule(seconds=st.sampled_from([0.5, 1.0, 3.0, 10.0, 40.0]))
    def wait(self, seconds: float) -> None:
        self.run(self.clock.advance(seconds))

    # -- invariants ----------------------------------------------------------------------

    @invariant()
    def tree_matches_the_model(self) -> None:
        if not getattr(self, "sups", None):
            return
        expected = set(self.live_sups()) | set(self.live_leaves())
        assert {r.name for r in self.system.actors()} == expected
        assert (self.system.failure is not None) == self.failed
        for leaf in self.live_leaves():
            assert self.journal.made[leaf] == self.made[leaf], (leaf, self.journal.made)
            assert Handle.of(self.system.lookup(leaf)).state is State.RUNNING

    async def cleanup(self) -> None:
        await asyncio.wait_for(self.system.shutdown(), 10)
        assert self.system.actors() == []
        current = asyncio.current_task()
        for _ in range(50):  # a turn scheduled as the tree stopped ends at its first step
            left = [t for t in asyncio.all_tasks() if t is not current and not t.done()]
            if not left:
                break
            await asyncio.sleep(0)
        assert left == []
        give_up_at = time.monotonic() + 5  # real seconds: pykka threads end on their own
        while pykka.ActorRegistry.get_all() or any(
            t.name.startswith("_ThreadHost") for t in threading.enumerate()
        ):
            assert time.monotonic() < give_up_at, "pykka threads left"
            await asyncio.sleep(0.01)


SupervisionMachine.TestCase.settings = settings(settings.default, stateful_step_count=12)
TestSupervision = SupervisionMachine.TestCase
