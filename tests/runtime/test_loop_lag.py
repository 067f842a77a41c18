"""A blocked loop made visible: turns bounded in time, slow-handler warnings, loop lag."""

from __future__ import annotations

import asyncio
import logging
import re
import signal
import subprocess
import sys
import time
from typing import Any, ClassVar

import pytest
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from troupe import Actor, ActorSystem, ConfigError
from troupe.loop_watch import Cause, judge
from troupe.metrics import TroupeCollector


class Blocker(Actor):
    """A plain actor whose sync handler blocks the loop (what ThreadActor is for)."""

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        self.handled = 0

    def receive(self, message: Any) -> int:
        time.sleep(self.seconds)
        self.handled += 1
        return self.handled


class Echo(Actor):
    def receive(self, message: Any) -> Any:
        return message


class Order:
    """A message type the warning should name."""


async def test_a_slow_handler_is_logged_naming_the_actor_and_message_type(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.WARNING, logger="troupe.loop_lag")
    async with ActorSystem(slow_handler_warning=0.02, loop_lag_interval=None) as system:
        ref = system.spawn(Blocker, 0.03, name="billing")
        for _ in range(3):
            await ref.ask(Order())
    held = [r for r in caplog.records if "held the event loop" in r.getMessage()]
    assert len(held) == 1  # rate-limited: one line per actor class per 10 s
    text = held[0].getMessage()
    assert "actor billing" in text and "Order message" in text and "ThreadActor" in text


@pytest.mark.parametrize("queued", ["tells", "page"])
async def test_a_slow_first_message_of_a_turn_is_logged_naming_its_type(
    caplog: pytest.LogCaptureFixture, queued: str
) -> None:
    """The first message of a turn with more queued behind it (a tell, or a page's message)
    that holds the loop is reported with its type; the turn goes on."""
    caplog.set_level(logging.WARNING, logger="troupe.loop_lag")

    class Page:
        def retry(self, index: int) -> bool:
            return False

        def started(self, index: int) -> None:
            pass

        def finished(self, index: int, error: BaseException | None) -> None:
            assert error is None

    async with ActorSystem(slow_handler_warning=0.02, loop_lag_interval=None) as system:
        ref = system.spawn(Blocker, 0.03, name="billing")
        if queued == "tells":
            ref.tell(Order())
            ref.tell(Order())
        else:
            ref.deliver_page([(Order(), None), (Order(), None)], Page())
        assert await system.wait_idle(5)
        assert system.cell_of(ref).actor.handled == 2  # type: ignore[attr-defined]
    held = [r for r in caplog.records if "held the event loop" in r.getMessage()]
    assert len(held) == 1 and "Order message" in held[0].getMessage()


async def test_a_fast_handler_is_not_logged(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, logger="troupe.loop_lag")
    async with ActorSystem(slow_handler_warning=0.05) as system:
        ref = system.spawn(Echo)
        for i in range(200):
            ref.tell(i)
        assert await ref.ask("last") == "last"
    assert not [r for r in caplog.records if "held the event loop" in r.getMessage()]


class Logged(Actor):
    """Appends its name to a shared log per message; sleeps ``seconds`` (blocking) first."""

    def __init__(self, log: list[str], seconds: float = 0.0) -> None:
        self.log, self.seconds = log, seconds

    def receive(self, message: Any) -> None:
        if message is QUIET:
            return
        time.sleep(self.seconds)
        self.log.append(self.name)


QUIET = object()  # Logged neither sleeps nor logs


async def ask_queued(ref: Any) -> None:
    """A message through ``ref``'s mailbox, waited for: an ask to an idle actor would be
    handled at once, in the asker's task (inline), ahead of turns already scheduled."""
    ref.tell("ping")
    await ref.ask(QUIET)


async def handled_before_others(system: ActorSystem, queued: int = 10) -> int:
    """Queue blocking messages, then ask another actor: how many ran before it replied."""
    log: list[str] = []
    blocker = system.spawn(Logged, log, 0.02, name="blocker")
    other = system.spawn(Logged, log, name="other")
    for i in range(queued):
        blocker.tell(i)
    await ask_queued(other)
    assert await system.wait_idle(5)
    return log.index("other")


async def test_a_turn_ends_once_it_has_run_its_time_budget() -> None:
    async with ActorSystem(loop_lag_interval=None, slow_handler_warning=None) as system:
        bounded = await handled_before_others(system)
    async with ActorSystem(
        throughput_deadline=None, loop_lag_interval=None, slow_handler_warning=None
    ) as system:
        unbounded = await handled_before_others(system)
    assert unbounded == 10  # one turn ran all ten before anyone else
    assert bounded == 1  # the blocker yielded after its first message (past 10 ms)


async def test_each_ask_to_another_actor_waits_for_one_blocking_message_at_most() -> None:
    log: list[str] = []
    async with ActorSystem(loop_lag_interval=None, slow_handler_warning=None) as system:
        blocker = system.spawn(Logged, log, 0.02, name="blocker")
        other = system.spawn(Logged, log, name="other")
        for i in range(8):
            blocker.tell(i)
        for _ in range(3):
            await ask_queued(other)  # the blocker sits out a loop round after each message
        assert await system.wait_idle(5)
    replies = [i for i, name in enumerate(log) if name == "other"]
    waited = [b - a - 1 for a, b in zip([-1, *replies], replies, strict=False)]
    assert waited == [1, 1, 1]


async def test_a_class_may_set_its_own_time_budget() -> None:
    class Patient(Logged):
        throughput_deadline: ClassVar[float | None] = 60.0

    async with ActorSystem(loop_lag_interval=None, slow_handler_warning=None) as system:
        log: list[str] = []
        blocker = system.spawn(Patient, log, 0.01, name="blocker")
        other = system.spawn(Logged, log, name="other")
        for i in range(5):
            blocker.tell(i)
        await ask_queued(other)
        assert log.index("other") == 5  # all five ran in its first turn


@pytest.mark.parametrize(
    "setting", ["throughput_deadline", "slow_handler_warning", "loop_lag_interval"]
)
@pytest.mark.parametrize("bad", [0, -1.0, "fast", True])
def test_time_settings_are_checked(setting: str, bad: Any) -> None:
    with pytest.raises(ConfigError) as caught:
        ActorSystem(**{setting: bad})
    assert caught.value.setting == setting


async def test_a_class_time_budget_is_checked_at_spawn() -> None:
    class Wrong(Echo):
        throughput_deadline: ClassVar[Any] = -2

    async with ActorSystem() as system:
        with pytest.raises(ConfigError, match=r"Wrong\.throughput_deadline"):
            system.spawn(Wrong)


def lag_samples(system: ActorSystem) -> dict[str, float]:
    assert system.metrics is not None
    registry = CollectorRegistry()
    registry.register(TroupeCollector([system.metrics.snapshots]))
    text = generate_latest(registry).decode()
    samples: dict[str, float] = {}
    for family in text_string_to_metric_families(text):
        if family.name == "troupe_loop_lag_seconds":
            for sample in family.samples:
                assert sample.labels["system"] == "lagged"
                key = sample.name + sample.labels.get("le", "")
                samples[key] = sample.value
    return samples


async def test_the_loop_lag_metric_rises_while_the_loop_is_blocked() -> None:
    async with ActorSystem("lagged", loop_lag_interval=0.01) as system:
        await asyncio.sleep(0.05)  # a few punctual ticks
        before = lag_samples(system)
        assert before["troupe_loop_lag_seconds_count"] >= 1
        assert before["troupe_loop_lag_seconds_sum"] < 0.1
        await system.spawn(Blocker, 0.15).ask("block")
        await asyncio.sleep(0.03)  # the late tick fires
        after = lag_samples(system)
        assert system.loop_lag is not None and system.loop_lag.max >= 0.1
    assert after["troupe_loop_lag_seconds_sum"] - before["troupe_loop_lag_seconds_sum"] >= 0.1
    late = after["troupe_loop_lag_seconds_count"] - after["troupe_loop_lag_seconds_bucket0.1"]
    assert late >= 1  # a tick more than 0.1 s late


async def test_lag_no_handler_explains_is_logged(caplog: pytest.LogCaptureFixture) -> None:
    class AsyncBlocker(Actor):
        async def receive(self, message: Any) -> None:
            time.sleep(0.12)  # noqa: ASYNC251 - blocks the loop from an async def handler

    caplog.set_level(logging.WARNING, logger="troupe.loop_lag")
    async with ActorSystem(loop_lag_interval=0.01) as system:
        await system.spawn(AsyncBlocker).ask("block")
        await asyncio.sleep(0.03)
    lines = [r.getMessage() for r in caplog.records]
    assert any("outside sync actor handlers" in line for line in lines)
    assert not any("held the event loop" in line for line in lines)


async def test_no_timer_is_left_after_shutdown() -> None:
    system = ActorSystem(loop_lag_interval=0.01)
    async with system:
        assert system.loop_lag is not None and system.loop_lag.running
    assert not system.loop_lag.running


async def test_an_idle_actor_drops_its_mailbox_queue() -> None:
    async with ActorSystem() as system:
        ref = system.spawn(Echo)
        for i in range(100):
            ref.tell(i)
        await ref.ask("last")
        await system.wait_idle(1)
        mailbox = system.cell_of(ref).mailbox
        assert mailbox.queue is None and mailbox.system is None and mailbox.waiters is None
        assert await ref.ask("again") == "again"  # and it takes messages as before


# -- why the loop was late: blocking code, or a process kept from running (troupe.loop_watch)


@pytest.mark.parametrize(
    ("figures", "cause", "threads"),
    [
        ((0.2, 0.19, 0.0, 0.0), Cause.COMPUTING, False),  # the loop's thread ran
        ((0.2, 0.09, 0.05, 0.0), Cause.COMPUTING, False),  # ran, on a loaded machine
        ((0.2, 0.0, 0.0, 0.0), Cause.WAITING, False),  # neither ran nor was kept: time.sleep
        ((0.2, 0.0, 0.02, 0.3), Cause.WAITING, True),  # asleep, or kept by threads' GIL
        ((0.2, 0.0, 0.15, 0.2), Cause.WAITING, True),  # kept from running, threads computed
        ((0.2, 0.0, 0.2, 0.0), Cause.NO_CPU, False),  # paused, or the machine saturated
        ((0.2, 0.02, 0.1, 0.01), Cause.NO_CPU, False),
    ],
)
def test_a_lag_is_judged_by_what_ran_meanwhile(
    figures: tuple[float, float, float, float], cause: Cause, threads: bool
) -> None:
    verdict = judge(*figures)
    assert verdict.cause is cause
    assert verdict.blocking is (cause is not Cause.NO_CPU)
    assert ("GIL" in verdict.explain()) is threads
    assert ("got no CPU" in verdict.explain()) is (cause is Cause.NO_CPU)


async def test_a_handler_that_sleeps_is_told_as_blocking(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, logger="troupe.loop_lag")
    async with ActorSystem(slow_handler_warning=0.05, loop_lag_interval=0.01) as system:
        await system.spawn(Blocker, 0.15, name="sleeper").ask(Order())
        await asyncio.sleep(0.03)
    held = [r.getMessage() for r in caplog.records if "held the event loop" in r.getMessage()]
    assert len(held) == 1
    assert "actor sleeper" in held[0] and "blocking call" in held[0] and "ThreadActor" in held[0]


class Spinner(Actor):
    """Computes (without sleeping) for ``seconds`` of CPU time per message."""

    def receive(self, seconds: float) -> None:
        end = time.thread_time() + seconds
        while time.thread_time() < end:
            pass


async def test_a_handler_that_computes_is_told_as_blocking(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.WARNING, logger="troupe.loop_lag")
    async with ActorSystem(slow_handler_warning=0.05, loop_lag_interval=0.01) as system:
        await system.spawn(Spinner, name="spinner").ask(0.2)
        await asyncio.sleep(0.03)
    held = [r.getMessage() for r in caplog.records if "held the event loop" in r.getMessage()]
    assert len(held) == 1
    assert "actor spinner" in held[0] and "it computed" in held[0] and "ThreadActor" in held[0]


async def test_the_lag_of_an_async_handler_names_the_actor(
    caplog: pytest.LogCaptureFixture,
) -> None:
    class AsyncBlocker(Actor):
        async def receive(self, message: Any) -> None:
            time.sleep(0.15)  # noqa: ASYNC251 - blocks the loop from an async def handler

    caplog.set_level(logging.WARNING, logger="troupe.loop_lag")
    async with ActorSystem(loop_lag_interval=0.01) as system:
        await system.spawn(AsyncBlocker, name="stuck").ask("block")
        await asyncio.sleep(0.03)
    lines = [r.getMessage() for r in caplog.records]
    assert any("blocked" in line and "by actor stuck" in line for line in lines), lines


STARVED = """
import asyncio, logging, sys, time
from troupe import Actor, ActorSystem

logging.basicConfig(level=logging.WARNING, format="%(message)s", stream=sys.stdout)

class Echo(Actor):
    def receive(self, message):
        return message

async def main():
    async with ActorSystem(loop_lag_interval=0.01) as system:
        ref = system.spawn(Echo, name="echo")
        print("ready", flush=True)
        end = time.monotonic() + 2.0
        while time.monotonic() < end:  # busy, and never blocking
            for i in range(20):
                ref.tell(i)
            await ref.ask("ping")
        print("done", flush=True)

asyncio.run(main())
"""


def test_a_paused_process_is_told_as_starved_not_as_blocking_code() -> None:
    child = subprocess.Popen(
        [sys.executable, "-c", STARVED], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )
    try:
        assert child.stdout is not None
        assert child.stdout.readline().strip() == "ready"
        time.sleep(0.3)
        child.send_signal(signal.SIGSTOP)  # the process gets no CPU, as on a saturated machine
        time.sleep(0.5)
    finally:
        child.send_signal(signal.SIGCONT)
        out, _ = child.communicate(timeout=30)
    assert child.returncode == 0, out
    # the pause's lag (other lags a loaded machine causes are shorter, and not asserted on)
    paused = [line for line in out.splitlines() if _seconds_in(line) >= 0.3]
    assert paused, out
    for line in paused:
        assert "got no CPU" in line and "not moving code off the loop" in line, out
        assert "ThreadActor" not in line


def _seconds_in(line: str) -> float:
    """The lag or handler time a warning line reports, 0 for other lines."""
    found = re.search(r"(\d+\.\d+) s\b", line)  # the first figure of a warning
    return float(found.group(1)) if found else 0.0
