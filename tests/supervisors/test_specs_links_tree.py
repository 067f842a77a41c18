"""Spec validation, shared policy functions, links, death watch and the live tree."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

sys.path.insert(0, str(Path(__file__).resolve().parent))

from supervision_helpers import Crash, Journal, ThreadWorker, Worker, settle

from troupe import Actor, ActorSystem, Child, ConfigError, State, Terminated, VirtualClock
from troupe.supervisors import (
    Backoff,
    ChildSpec,
    Directive,
    LinkFailed,
    RestartIntensity,
    RestartTracker,
    RestartType,
    Strategy,
    SupervisorSpec,
    decider,
    format_tree,
    link,
    linked,
    live_tree,
    plan_restart,
    start_supervisor,
    unlink,
)

# -- construction-time errors -----------------------------------------------------------------


class NotAnActor:
    pass


class Plain(Actor):
    def receive(self, message: Any) -> Any:
        if message == "crash":
            raise Crash(self.name)
        return message


@pytest.mark.parametrize(
    ("build", "match"),
    [
        (lambda: ChildSpec(NotAnActor), "not an Actor subclass"),
        (lambda: ChildSpec(Plain.__new__(Plain)), "pass the class itself"),
        (lambda: ChildSpec(42), "is not an actor class"),  # type: ignore[arg-type]
        (lambda: ChildSpec(Plain, restart="sometimes"), "unknown restart type"),  # type: ignore[arg-type]
        (lambda: ChildSpec(Plain, shutdown=-1), "zero or more seconds"),
        (lambda: ChildSpec(Plain, name=""), "non-empty string"),
        (lambda: SupervisorSpec([Plain, Plain]), "duplicate child name 'Plain'"),
        (lambda: SupervisorSpec([ChildSpec(Plain, name="a")] * 2), "duplicate child name 'a'"),
        (lambda: SupervisorSpec([Plain], max_restarts=-1), "zero or positive"),
        (lambda: SupervisorSpec([Plain], within=0), "must be positive"),
        (lambda: SupervisorSpec([Plain], strategy="one_for_some"), "unknown strategy"),  # type: ignore[arg-type]
        (lambda: SupervisorSpec([NotAnActor]), "is not a ChildSpec"),  # type: ignore[list-item]
        (lambda: SupervisorSpec([], strategy="simple_one_for_one"), "exactly one child spec"),
        (lambda: SupervisorSpec([Plain], backoff=1.0), "must be a Backoff"),  # type: ignore[arg-type]
        (lambda: SupervisorSpec(ChildSpec(Plain)), "must be a list"),  # type: ignore[arg-type]
        (lambda: decider({Crash: "ignore"}), "unknown directive"),
        (lambda: decider({"Crash": "stop"}), "exception classes"),  # type: ignore[dict-item]
    ],
)
def test_bad_specs_fail_at_construction_with_a_clear_error(build: Any, match: str) -> None:
    with pytest.raises(ConfigError, match=match):
        build()


async def test_a_name_taken_by_another_actor_fails_the_supervisor_start() -> None:
    async with ActorSystem() as system:
        system.spawn(Plain, name="a")
        spec = SupervisorSpec([ChildSpec(Plain, name="a")], name="root")
        failed: list[Terminated] = []
        ref = spec.spawn(system)
        system.watch(ref, failed.append)
        await system.wait_idle(5)
        assert not ref.is_alive and "already running" in str(failed[0].reason)


# -- shared policy ----------------------------------------------------------------------------

KIDS = [("a", RestartType.PERMANENT), ("t", RestartType.TEMPORARY), ("c", RestartType.TRANSIENT)]


@pytest.mark.parametrize(
    ("strategy", "ended", "abnormal", "restart", "remove"),
    [
        (Strategy.ONE_FOR_ONE, "a", False, ("a",), ()),
        (Strategy.ONE_FOR_ONE, "c", False, (), ("c",)),
        (Strategy.ONE_FOR_ONE, "t", True, (), ("t",)),
        (Strategy.ONE_FOR_ALL, "c", True, ("a", "c"), ("t",)),
        (Strategy.ONE_FOR_ALL, "t", True, (), ("t",)),
        (Strategy.REST_FOR_ONE, "a", True, ("a", "c"), ("t",)),
        (Strategy.REST_FOR_ONE, "c", True, ("c",), ()),
        (Strategy.SIMPLE_ONE_FOR_ONE, "a", True, ("a",), ()),
    ],
)
def test_plan_restart_follows_otp(
    strategy: Strategy,
    ended: str,
    abnormal: bool,
    restart: tuple[str, ...],
    remove: tuple[str, ...],
) -> None:
    plan = plan_restart(strategy, KIDS, ended, abnormal)
    assert (plan.restart, plan.remove) == (restart, remove)


@given(st.lists(st.floats(0, 100), min_size=1, max_size=30), st.integers(0, 5), st.floats(0.5, 20))
def test_tracker_gives_up_exactly_past_the_limit(
    gaps: list[float], limit: int, within: float
) -> None:
    tracker = RestartTracker(RestartIntensity(limit, within), Backoff.none())
    now, times = 0.0, []
    for gap in gaps:
        now += gap
        times.append(now)
        in_window = [t for t in times if t > now - within]
        delay = tracker.record("x", now)
        assert (delay is None) == (len(in_window) > limit)
        if delay is None:
            break


def test_decider_uses_the_most_specific_exception_class() -> None:
    decide = decider({Exception: "stop", LookupError: "escalate", KeyError: "resume"})
    assert decide(KeyError()) is Directive.RESUME
    assert decide(IndexError()) is Directive.ESCALATE
    assert decide(ValueError()) is Directive.STOP
    assert decide(KeyboardInterrupt()) is Directive.RESTART


# -- links and death watch --------------------------------------------------------------------


class Watcher(Actor):
    def __init__(self) -> None:
        self.seen: list[Terminated] = []

    def receive(self, message: Any) -> Any:
        if isinstance(message, Terminated):
            self.seen.append(message)
            return None
        if message == "seen":
            return [(t.ref.name, type(t.reason).__name__) for t in self.seen]
        self.watch(message)
        return None


async def test_linked_actors_fail_together_and_only_once() -> None:
    clock = VirtualClock()
    async with ActorSystem(clock=clock) as system:
        a, b, c = (system.spawn(Plain, name=n) for n in "abc")
        link(a, b)
        link(b, c)
        link(c, a)  # a cycle: the failure still travels once
        assert linked(a) == [b, c]
        a.tell("crash")
        await settle(clock, 1.0)  # past the restart policy's backoff
        failures = {n: Child.of(r).restarts for n, r in zip("abc", (a, b, c), strict=True)}
        assert failures == {"a": 1, "b": 1, "c": 1}  # the guardian restarted each once


async def test_link_failure_reaches_the_partners_supervisor() -> None:
    clock = VirtualClock()
    journal = Journal()
    spec = SupervisorSpec(
        [ChildSpec(Worker, (journal,), name="w")],
        name="root",
        decider=decider({LinkFailed: Directive.STOP}),
    )
    async with ActorSystem(clock=clock) as system:
        await start_supervisor(system, spec)
        other = system.spawn(Plain, name="other")
        watcher = system.spawn(Watcher, name="watcher")
        watcher.tell(system.lookup("w"))
        link(other, system.lookup("w"))
        other.tell("crash")
        await settle(clock)
        assert await watcher.ask("seen") == [("w", "LinkFailed")]


async def test_normal_stop_and_unlink_do_not_fail_the_partner() -> None:
    clock = VirtualClock()
    async with ActorSystem(clock=clock) as system:
        a, b, c = (system.spawn(Plain, name=n) for n in "abc")
        link(a, b)
        link(a, c)
        unlink(a, c)
        await a.stop()
        c.tell("ok")
        await settle(clock)
        assert Child.of(b).restarts == Child.of(c).restarts == 0
        assert linked(b) == []
        with pytest.raises(ValueError, match="has stopped"):
            link(a, b)


async def test_abnormal_stop_of_a_linked_actor_fails_the_partner() -> None:
    clock = VirtualClock()
    async with ActorSystem(clock=clock) as system:
        a, b = system.spawn(Plain, name="a"), system.spawn(Plain, name="b")
        link(a, b)
        Child.of(a).stop(RuntimeError("gone"))
        await settle(clock, 1.0)  # past the restart policy's backoff
        assert Child.of(b).restarts == 1


async def test_watchers_get_terminated_with_the_reason() -> None:
    clock = VirtualClock()
    spec = SupervisorSpec([ChildSpec(Plain, name="p")], name="root", decider=lambda e: "stop")
    async with ActorSystem(clock=clock) as system:
        await start_supervisor(system, spec)
        watcher = system.spawn(Watcher, name="watcher")
        watcher.tell(system.lookup("p"))
        system.lookup("p").tell("crash")
        await settle(clock)
        assert await watcher.ask("seen") == [("p", "Crash")]


# -- the live tree ----------------------------------------------------------------------------


async def test_live_tree_shows_names_kinds_states_restarts_and_depth() -> None:
    clock = VirtualClock()
    journal = Journal()
    pool = SupervisorSpec([ChildSpec(Plain, name="p")], name="pool", strategy="simple_one_for_one")
    spec = SupervisorSpec(
        [
            ChildSpec(Worker, (journal,), name="w", restart="transient"),
            ChildSpec(ThreadWorker, (journal,), name="tw"),
            pool,
        ],
        name="root",
        strategy="rest_for_one",
        max_restarts=1,
        backoff=Backoff(1, 1, jitter="none"),
    )
    async with ActorSystem(clock=clock) as system:
        await start_supervisor(system, spec)
        w = system.lookup("w")
        w.tell("crash")  # restarts at once (with tw and pool: rest_for_one)
        w.tell("crash")  # the second in a row: a crash loop, restarts after 1 s
        w.tell("queued")
        await settle(clock)
        [root] = live_tree(system)
        nodes = {n.name: n for n in root.walk()}
        assert (root.kind, root.strategy, root.state) == ("supervisor", "rest_for_one", "RUNNING")
        assert [c.name for c in root.children] == ["w", "tw", "pool"]
        assert (nodes["w"].kind, nodes["w"].restart, nodes["w"].state) == (
            "actor",
            "transient",
            "SUSPENDED",
        )
        assert nodes["w"].mailbox_depth == 1
        assert (nodes["tw"].kind, nodes["pool"].kind) == ("thread", "supervisor")
        await settle(clock, 1)
        assert await system.wait_idle(5)  # the thread actor restarts on its own thread
        [root] = live_tree(system)
        rows = [(n.name, n.restarts, n.mailbox_depth) for n in root.walk()]
        # the thread actor's second restart may fold into its first, still pending on its thread
        assert rows in (
            [("root", 0, 0), ("w", 2, 0), ("tw", tw, 0), ("pool", 2, 0)] for tw in (1, 2)
        ), rows
        text = format_tree(live_tree(system))
        assert "  w [actor transient] RUNNING restarts=2 mailbox=0" in text
        assert root.to_dict()["children"][2]["strategy"] == "simple_one_for_one"
        assert Child.of(system.lookup("tw")).state is State.RUNNING


async def test_a_factory_function_is_a_valid_child_and_runs_again_at_restart() -> None:
    clock = VirtualClock()
    made: list[str] = []

    def make_plain(tag: str) -> Plain:
        made.append(tag)
        return Plain()

    spec = SupervisorSpec([ChildSpec(make_plain, ("t",), name="p")], name="root")
    async with ActorSystem(clock=clock) as system:
        await start_supervisor(system, spec)
        system.lookup("p").tell("crash")
        await settle(clock)
        assert made == ["t", "t"] and await system.lookup("p").ask("hi") == "hi"
