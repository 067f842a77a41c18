"""Metrics over the real /metrics endpoint, parsed with prometheus_client's parser."""

from __future__ import annotations

import asyncio
import json
import re
import threading
import time
import urllib.request
from pathlib import Path
from typing import Any, ClassVar

import pytest
from hypothesis import given
from hypothesis import strategies as st
from prometheus_client.parser import text_string_to_metric_families

from troupe import Actor, ActorSystem, Backoff, MailboxConfig, RestartPolicy
from troupe.dead_letters import REASONS
from troupe.metrics import BUCKETS, bridge_stats, group_label


def scrape_text(url: str) -> str:
    with urllib.request.urlopen(url, timeout=10) as response:
        body: bytes = response.read()
    return body.decode()


async def scrape(system: ActorSystem) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """``{(sample name, sorted labels): value}`` from the system's endpoint."""
    text = await asyncio.to_thread(scrape_text, system.metrics_endpoint.url)
    samples: dict[tuple[str, tuple[tuple[str, str], ...]], float] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            samples[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return samples


def value(samples: dict[Any, float], name: str, **labels: str) -> float:
    return samples.get((name, tuple(sorted(labels.items()))), 0.0)


class Worker(Actor):
    """Replies to ints; fails on "boom"."""

    def receive(self, message: Any) -> Any:
        if message == "boom":
            raise RuntimeError("boom")
        return message


class AsyncWorker(Actor):
    async def receive(self, message: Any) -> Any:
        await asyncio.sleep(0)
        if message == "boom":
            raise RuntimeError("boom")
        return message


@pytest.mark.parametrize("cls", [Worker, AsyncWorker])
async def test_endpoint_counts_messages_failures_restarts_and_histogram(cls: type[Actor]) -> None:
    async with ActorSystem("app", metrics_port=0) as system:
        assert system.metrics_endpoint.url.startswith("http://127.0.0.1:")
        ref = system.spawn(cls, name="orders")
        for i in range(40):
            ref.tell(i)
        for _ in range(3):
            with pytest.raises(RuntimeError):
                await ref.ask("boom")
            assert await ref.ask("sync") == "sync"  # waits out the restart
        samples = await scrape(system)
    ok = value(samples, "troupe_messages_total", actor="orders", outcome="ok")
    failed = value(samples, "troupe_messages_total", actor="orders", outcome="failed")
    assert (ok, failed) == (43, 3)
    assert value(samples, "troupe_handler_seconds_count", actor="orders") == 46
    assert value(samples, "troupe_handler_seconds_bucket", actor="orders", le="+Inf") == 46
    assert value(samples, "troupe_handler_seconds_sum", actor="orders") > 0
    assert value(samples, "troupe_restarts_total", actor="orders") == 3
    assert value(samples, "troupe_actors", actor="orders") == 1
    assert value(samples, "troupe_process_up", process="app") == 1


class Sleeper(Actor):
    async def receive(self, message: float) -> None:
        await asyncio.sleep(message)


async def test_histogram_buckets_place_each_duration() -> None:
    async with ActorSystem(metrics_port=0) as system:
        ref = system.spawn(Sleeper, name="sleeper")
        for seconds in (0.0, 0.0, 0.03, 0.12):
            await ref.ask(seconds)
        samples = await scrape(system)
    bucket = {
        le: value(samples, "troupe_handler_seconds_bucket", actor="sleeper", le=le)
        for le in ("0.01", "0.025", "0.05", "0.1", "0.25", "+Inf")
    }
    assert bucket["0.01"] == 2  # two sleep(0)
    assert bucket["0.025"] == 2
    assert bucket["0.05"] == 3  # + the 30 ms sleep
    assert bucket["0.1"] == 3
    assert bucket["0.25"] == 4  # + the 120 ms sleep
    assert bucket["+Inf"] == 4
    assert 0.15 <= value(samples, "troupe_handler_seconds_sum", actor="sleeper") < 1.0


class Pooled(Actor):
    def receive(self, message: Any) -> None:
        pass


class Labelled(Actor):
    metrics_label = "labelled"

    def receive(self, message: Any) -> None:
        pass


async def test_labels_stay_bounded() -> None:
    async with ActorSystem(metrics_port=0) as system:
        assert system.metrics is not None
        system.metrics.label_limit = 4
        pooled = [system.spawn(Pooled) for _ in range(10)]  # auto-named: Pooled-1, Pooled-2, ...
        for ref in pooled:
            ref.tell("x")
        named = [system.spawn(Labelled, name=f"l-{i}") for i in range(3)]
        explicit = system.spawn(Pooled, name="custom", metrics_label="mine")
        extra = [system.spawn(Worker, name=f"w-{i}") for i in range(5)]
        for ref in [*named, explicit, *extra]:
            ref.tell(1)
        await asyncio.sleep(0.01)
        samples = await scrape(system)
        assert group_label(pooled[0]) == group_label(pooled[9]) == "Pooled"
        assert {group_label(r) for r in named} == {"labelled"}
        assert group_label(explicit) == "mine"
    actors = {labels[0][1] for (name, labels) in samples if name == "troupe_actors"}
    # Pooled, labelled, mine, w-0 fill the limit of 4; later names fall back to their class
    assert actors == {"Pooled", "labelled", "mine", "w-0", "Worker"}
    assert value(samples, "troupe_messages_total", actor="Pooled", outcome="ok") == 10
    assert value(samples, "troupe_messages_total", actor="Worker", outcome="ok") == 4
    assert value(samples, "troupe_actors", actor="Pooled") == 10


class Gate(Actor):
    """Handles nothing until 'open' is set."""

    opened: ClassVar[asyncio.Event]

    async def receive(self, message: Any) -> None:
        await self.opened.wait()


async def test_mailbox_depth_dead_letters_and_drops() -> None:
    async with ActorSystem(metrics_port=0) as system:
        Gate.opened = asyncio.Event()
        gate = system.spawn(Gate, name="gate")
        for i in range(6):
            gate.tell(i)
        await asyncio.sleep(0.01)
        samples = await scrape(system)
        assert value(samples, "troupe_mailbox_depth", actor="gate") == 5  # one is in the handler
        Gate.opened.set()
        dropper = system.spawn(
            Gate, name="dropper", mailbox=MailboxConfig(capacity=1, policy="drop_newest")
        )
        Gate.opened = asyncio.Event()
        for i in range(4):
            dropper.tell(i)  # 0 in the handler after the first turn, 1 queued... the rest dropped
        gone = system.spawn(Worker, name="gone")
        await gone.stop()
        for i in range(7):
            gone.tell(i)
        samples = await scrape(system)
        Gate.opened.set()
    assert value(samples, "troupe_messages_total", actor="gone", outcome="dead_lettered") == 7
    assert value(samples, "troupe_dead_letters_total", reason="recipient stopped") == 7
    assert value(samples, "troupe_messages_total", actor="dropper", outcome="dropped") == 3


async def test_metrics_off() -> None:
    async with ActorSystem(metrics=False) as system:
        ref = system.spawn(Worker)
        assert await ref.ask(1) == 1
        assert system.metrics is None
        assert system.cell_of(ref).metrics is None
        assert system.metrics_endpoint is None
        stats = bridge_stats(system, "orders-in", "kafka")
        stats.consumed()  # counts into a detached row; no error


async def test_bridge_hooks_are_exported() -> None:
    async with ActorSystem(metrics_port=0) as system:
        stats = bridge_stats(system, "orders-in", "redis")
        stats.consumed(5)
        stats.acked(4)
        stats.redelivered()
        stats.dead_lettered()
        stats.published(3)
        stats.confirmed(2)
        stats.publish_failed()
        stats.set_lag(17)
        stats.set_in_flight(1)
        samples = await scrape(system)
    labels = {"bridge": "orders-in", "broker": "redis"}
    assert value(samples, "troupe_broker_consumed_total", **labels) == 5
    assert value(samples, "troupe_broker_acked_total", **labels) == 4
    assert value(samples, "troupe_broker_redeliveries_total", **labels) == 1
    assert value(samples, "troupe_broker_dead_lettered_total", **labels) == 1
    assert value(samples, "troupe_broker_published_total", **labels) == 3
    assert value(samples, "troupe_broker_publish_confirms_total", **labels) == 2
    assert value(samples, "troupe_broker_publish_failures_total", **labels) == 1
    assert value(samples, "troupe_broker_consumer_lag", **labels) == 17
    assert value(samples, "troupe_broker_in_flight", **labels) == 1


async def test_endpoint_closes_with_the_system() -> None:
    async with ActorSystem(metrics_port=0) as system:
        url = system.metrics_endpoint.url
        directory = system.metrics_endpoint.directory
        assert directory.is_dir()
    with pytest.raises(OSError):
        scrape_text(url)
    assert not directory.exists()


# -- property: whatever the mix, the endpoint's counts are the messages sent ---------------

plans = st.lists(
    st.tuples(st.sampled_from(["a", "b", "pool"]), st.sampled_from(["ok", "fail", "tell"])),
    max_size=40,
)


@given(plan=plans, asynchronous=st.booleans())
async def test_counts_match_messages_sent(plan: list[tuple[str, str]], asynchronous: bool) -> None:
    cls = AsyncWorker if asynchronous else Worker
    every_failure = RestartPolicy(max_restarts=1000, within=1.0, backoff=Backoff.none())
    async with ActorSystem(metrics_port=0, restart=every_failure) as system:
        refs = {"a": system.spawn(cls, name="a"), "b": system.spawn(cls, name="b")}
        pool = [system.spawn(cls) for _ in range(3)]  # auto-named: labelled by class
        expected: dict[str, list[int]] = {"a": [0, 0], "b": [0, 0], cls.__name__: [0, 0]}
        for i, (target, kind) in enumerate(plan):
            ref = refs[target] if target != "pool" else pool[i % 3]
            label = target if target != "pool" else cls.__name__
            if kind == "fail":
                with pytest.raises(RuntimeError):
                    await ref.ask("boom")
                expected[label][1] += 1
            elif kind == "ok":
                await ref.ask(i)
                expected[label][0] += 1
            else:
                ref.tell(i)
                expected[label][0] += 1
        for ref in [*refs.values(), *pool]:
            await ref.ask("sync")
            expected[group_label(ref) or ""][0] += 1
        samples = await scrape(system)
    for label, (ok, failed) in expected.items():
        assert value(samples, "troupe_messages_total", actor=label, outcome="ok") == ok
        assert value(samples, "troupe_messages_total", actor=label, outcome="failed") == failed
        assert value(samples, "troupe_handler_seconds_count", actor=label) == ok + failed
        assert value(samples, "troupe_restarts_total", actor=label) == failed
    assert len(BUCKETS) + 1 == sum(
        1
        for (name, labels) in samples
        if name == "troupe_handler_seconds_bucket" and dict(labels)["actor"] == "a"
    )


class Sync(Actor):
    """Sleeps (blocking) for the given seconds; returns at once for 0."""

    def receive(self, message: float) -> None:
        if message:
            time.sleep(message)


async def test_turn_timing_falls_back_to_per_call_timing_after_an_overrun() -> None:
    async with ActorSystem(metrics_port=0) as system:
        ref = system.spawn(Sync, name="sync")
        cell = system.cell_of(ref)
        assert cell.metrics is not None and not cell._each  # turns are timed in segments
        for _ in range(10):
            ref.tell(0.0)
        await ref.ask(0.03)  # the same turn: ten fast calls and one slow call
        # The turn is timed in segments (troupe.dispatch): the slow call was timed alone,
        # or its segment overran and calls are now timed one by one (cell._each).
        for _ in range(3):
            ref.tell(0.006)
        await ref.ask(0.0)
        fast = 10 + 1
        for _ in range(20):  # a busy machine may stretch a turn past 50 us now and then
            for _ in range(5):
                ref.tell(0.0)
            await ref.ask(0.0)
            fast += 6
            if not cell._each:
                break
        assert not cell._each  # a whole turn had no slow call again
        samples = await scrape(system)
    bucket = {
        le: value(samples, "troupe_handler_seconds_bucket", actor="sync", le=le)
        for le in ("5e-05", "0.005", "0.01", "0.025", "0.05", "+Inf")
    }
    assert bucket["5e-05"] >= fast - 2  # a fast call may exceed 50 us on a busy machine
    assert bucket["0.005"] == fast
    assert bucket["0.01"] == fast + 3  # the three 6 ms calls, each timed
    assert bucket["0.025"] == fast + 3
    assert bucket["0.05"] == fast + 4  # the 30 ms call took its turn's time
    assert bucket["+Inf"] == fast + 4


class Child(Actor):
    def receive(self, message: Any) -> Any:
        if message == "crash":
            raise RuntimeError("crash")
        return message


async def test_supervisor_escalations_and_restarts_are_counted() -> None:
    from troupe.supervisors import ChildSpec, SupervisorSpec, start_supervisor

    inner = SupervisorSpec(
        [ChildSpec(Child, name="x"), ChildSpec(Child, name="y")],
        name="inner",
        decider=lambda exc: "escalate",
    )
    outer = SupervisorSpec([inner, ChildSpec(Child, name="z")], name="outer")
    async with ActorSystem(metrics_port=0) as system:
        await start_supervisor(system, outer)
        old_y = system.lookup("y")
        old_y.tell("crash")
        for _ in range(200):
            new_y = system.find("y")
            if new_y is not None and new_y != old_y and await new_y.ask("up") == "up":
                break
            await asyncio.sleep(0.01)
        samples = await scrape(system)
    assert value(samples, "troupe_messages_total", actor="y", outcome="failed") == 1
    assert value(samples, "troupe_escalations_total", actor="inner") == 1
    assert value(samples, "troupe_restarts_total", actor="inner") == 1
    assert value(samples, "troupe_escalations_total", actor="outer") == 0
    assert value(samples, "troupe_actors", actor="y") == 1


DASHBOARD = Path(__file__).resolve().parents[2] / "examples" / "grafana" / "troupe.json"


async def test_grafana_dashboard_uses_only_exported_metrics() -> None:
    panels = json.loads(DASHBOARD.read_text())["panels"]
    exprs = [t["expr"] for p in panels for t in p.get("targets", [])]
    used = {
        re.sub(r"_(total|bucket|sum|count)$", "", n)
        for e in exprs
        for n in re.findall(r"troupe_\w+", e)
    }
    async with ActorSystem(metrics_port=0) as system:
        text = await asyncio.to_thread(scrape_text, system.metrics_endpoint.url)
    exported = {family.name for family in text_string_to_metric_families(text)}
    assert used <= exported, used - exported
    assert {"troupe_messages", "troupe_handler_seconds", "troupe_broker_consumer_lag"} <= used


async def test_long_names_and_reasons_are_cut_not_fatal() -> None:
    async with ActorSystem(metrics_port=0) as system:
        name = "ü" * 300
        ref = system.spawn(Worker, name=name)
        assert await ref.ask(1) == 1
        system.dead_letters.publish("x", "nobody", "why " * 200)
        samples = await scrape(system)
    assert value(samples, "troupe_messages_total", actor=name[:48], outcome="ok") == 1
    assert value(samples, "troupe_dead_letters_total", reason=("why " * 200)[:48]) == 1


async def test_a_busy_port_is_a_config_error_naming_it() -> None:
    from troupe import ConfigError

    async with ActorSystem(metrics_port=0) as first:
        port = first.metrics_endpoint.port
        with pytest.raises(ConfigError, match=f"127.0.0.1:{port}: ") as excinfo:
            async with ActorSystem(metrics_port=port):
                pass
        assert excinfo.value.__cause__ is None and excinfo.value.__suppress_context__


@pytest.mark.parametrize("port", [99999, -1, True, "9464"])
async def test_a_port_out_of_range_is_a_config_error_naming_it(port: Any) -> None:
    from troupe import ConfigError

    with pytest.raises(ConfigError, match=rf"'metrics_port'.*got {re.escape(repr(port))}"):
        async with ActorSystem(metrics_port=port):
            pass


async def test_dead_letter_reasons_are_exported_at_zero_before_the_first() -> None:
    async with ActorSystem(metrics_port=0) as system:
        samples = await scrape(system)
    for reason in REASONS:
        assert (
            "troupe_dead_letters_total",
            (("reason", reason),),
        ) in samples, reason
        assert value(samples, "troupe_dead_letters_total", reason=reason) == 0


class Slow(Actor):
    async def receive(self, message: Any) -> None:
        await asyncio.sleep(0.02)


def test_every_reason_the_runtime_gives_is_in_the_one_list() -> None:
    systems: list[ActorSystem] = []

    async def run() -> Any:
        system = ActorSystem("reasons")
        systems.append(system)
        async with system:
            full = system.spawn(
                Slow, name="full", mailbox=MailboxConfig(capacity=1, policy="dead_letter")
            )
            for i in range(3):
                full.tell(i)  # one runs, one waits, one is dead-lettered: "mailbox full"
            gone = system.spawn(Slow, name="gone")
            await gone.stop()
            gone.tell("late")  # "recipient stopped"
        return full

    ref = asyncio.run(run())
    sender = threading.Thread(target=ref.tell, args=("after close",))  # "system closed"
    sender.start()
    sender.join()
    given_reasons = systems[0].dead_letters.by_reason
    assert set(given_reasons) == set(REASONS), given_reasons
