"""A blocked loop made visible: turns bounded in time, slow-handler warnings, loop lag."""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any, ClassVar

import pytest
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from troupe import Actor, ActorSystem, ConfigError
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
        time.sleep(self.seconds)
        self.log.append(self.name)


async def handled_before_others(system: ActorSystem, queued: int = 10) -> int:
    """Queue blocking messages, then ask another actor: how many ran before it replied."""
    log: list[str] = []
    blocker = system.spawn(Logged, log, 0.02, name="blocker")
    other = system.spawn(Logged, log, name="other")
    for i in range(queued):
        blocker.tell(i)
    await other.ask("ping")
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
            await other.ask("ping")  # the blocker sits out a loop round after each message
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
        await other.ask("ping")
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
