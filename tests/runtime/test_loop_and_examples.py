"""uvloop selection, the collector under ``troupe.run``, and the quickstart example (the
README's first command)."""

from __future__ import annotations

import asyncio
import gc
import subprocess
import sys
import warnings
from typing import Any

import pytest

import troupe
from troupe import Actor, ActorSystem, ConfigError
from troupe.brokers import ConsumerBridge, connect
from troupe.loop import GC_THRESHOLD, uvloop_available


def test_run_uses_uvloop_when_installed() -> None:
    async def loop_module() -> str:
        return type(asyncio.get_running_loop()).__module__

    module = troupe.run(loop_module())
    assert module.startswith("uvloop") == uvloop_available()


def test_quickstart_example_runs_and_recovers_from_the_poisoned_line() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "troupe.examples.quickstart"],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    assert "lines counted: 400 of 401" in result.stdout
    assert "restarts: 1" in result.stdout
    assert "counter-" in result.stderr and "poisoned line" in result.stderr


def test_run_sizes_the_young_generation_for_messages_in_flight_and_restores_it() -> None:
    async def threshold() -> int:
        return gc.get_threshold()[0]

    before = gc.get_threshold()
    assert before[0] < GC_THRESHOLD  # CPython's default (700; 2000 from 3.13)
    assert troupe.run(threshold()) == GC_THRESHOLD
    assert gc.get_threshold() == before
    assert troupe.run(threshold(), gc_threshold=None) == before[0]  # left alone
    try:
        gc.set_threshold(50_000, *before[1:])  # the process chose more: kept
        assert troupe.run(threshold()) == 50_000
        gc.set_threshold(0, *before[1:])  # automatic collection off: kept off
        assert troupe.run(threshold()) == 0
    finally:
        gc.set_threshold(*before)


def test_a_bad_gc_threshold_names_the_setting_and_runs_nothing() -> None:
    ran: list[bool] = []

    async def main() -> None:
        ran.append(True)

    with warnings.catch_warnings():
        warnings.simplefilter("error")  # "coroutine was never awaited" would be an error
        with pytest.raises(ConfigError, match="gc_threshold"):
            troupe.run(main(), gc_threshold=0)
    assert ran == []


def test_messages_in_flight_through_a_bridge_die_young_under_run() -> None:
    """A consumer bridge keeps pages of deliveries in flight: with CPython's default
    threshold young collections catch them alive, under ``run``'s they are freed first."""

    async def consume(n: int) -> None:
        broker = connect("memory://")
        await broker.ensure_group("s", "g")
        await broker.publish_messages("s", [broker.message({"n": i}) for i in range(n)])
        async with ActorSystem("gc") as system:
            done = asyncio.get_running_loop().create_future()
            sink = system.spawn(Sink, n, done)
            system.spawn(ConsumerBridge, broker, "s", "g", sink, consumer="c")
            await asyncio.wait_for(done, 30)
        await broker.close()

    def young_collections(**options: Any) -> int:
        counts = [0]

        def count(phase: str, info: dict[str, Any]) -> None:
            if phase == "start" and info["generation"] == 0:
                counts[0] += 1

        gc.collect()
        gc.callbacks.append(count)
        try:
            troupe.run(consume(5_000), **options)
        finally:
            gc.callbacks.remove(count)
        return counts[0]

    default = young_collections(gc_threshold=None)
    tuned = young_collections()
    assert default >= 20  # CPython's threshold: a young collection every few pages
    assert tuned * 5 <= default


class Sink(Actor):
    def __init__(self, total: int, done: asyncio.Future[None]) -> None:
        self.left = total
        self.done = done

    def receive(self, message: Any) -> None:
        self.left -= 1
        if self.left == 0:
            self.done.set_result(None)
