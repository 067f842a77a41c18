"""Faults on a real Redis: a consumer process killed with -9, a server restart, publish errors."""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
import redis.asyncio as aioredis

from tests.helpers import eventually
from troupe import Actor, ActorSystem
from troupe.brokers import (
    ConsumerBridge,
    connect,
)
from troupe.brokers.servers import RedisServer
from troupe.supervisors import Backoff

CONSUMER = Path(__file__).with_name("effect_consumer.py")
TOTAL = 10_000


def start_consumer(url: str) -> subprocess.Popen[bytes]:
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    return subprocess.Popen(
        [sys.executable, str(CONSUMER), url, "orders", "effects"],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


@pytest.mark.timeout(300)  # two consumer processes through 10k messages on a loaded machine
async def test_kill_9_mid_stream_loses_nothing_and_effects_happen_once(redis_url: str) -> None:
    broker = connect(redis_url)
    client = aioredis.Redis.from_url(redis_url)
    try:
        await broker.ensure_group("orders", "effects")
        for start in range(0, TOTAL, 1000):
            await broker.publish_messages(
                "orders", [broker.message({"n": i}) for i in range(start, start + 1000)]
            )
        first = start_consumer(redis_url)
        try:

            async def some_handled() -> bool:
                return int(await client.hlen("handled")) >= TOTAL // 4

            await eventually(some_handled, timeout=60, interval=0.05)
            first.send_signal(signal.SIGKILL)  # mid-stream: no drain, no ack
            first.wait()
            assert int(await client.hlen("effects")) < TOTAL
        finally:
            first.kill()
            first.wait()
        second = start_consumer(redis_url)
        try:

            async def all_applied() -> bool:
                return int(await client.hlen("effects")) == TOTAL

            await eventually(all_applied, timeout=120, interval=0.05)
            await eventually(lambda: _pending_is_zero(broker), timeout=60, interval=0.05)
        finally:
            second.kill()
            second.wait()
        handled = {int(k): int(v) for k, v in (await client.hgetall("handled")).items()}
        effects = {int(k): int(v) for k, v in (await client.hgetall("effects")).items()}
        assert set(handled) == set(range(TOTAL))  # every message handled at least once
        # the kill really left work behind that was delivered again (effects once is tested)
        assert any(times > 1 for times in handled.values())
        assert effects == dict.fromkeys(range(TOTAL), 1)  # every effect exactly once
        assert await broker.dead_letters("orders") == []
    finally:
        await client.aclose()
        await broker.close()


async def _pending_is_zero(broker: Any) -> bool:
    return int(await broker.pending("orders", "effects")) == 0


class Slow(Actor):
    def __init__(self, seen: list[int]) -> None:
        self.seen = seen

    async def receive(self, message: Any) -> None:
        await asyncio.sleep(0.0005)
        self.seen.append(message)


async def test_server_restart_during_consumption_is_survived(
    redis_url: str, redis_server: RedisServer
) -> None:
    broker = connect(redis_url, reconnect=Backoff(initial=0.05, maximum=0.5))
    seen: list[int] = []
    try:
        await broker.ensure_group("s", "g")
        await broker.publish_messages("s", [broker.message(i) for i in range(2000)])
        async with ActorSystem() as system:
            target = system.spawn(Slow, seen)
            bridge = system.spawn(ConsumerBridge, broker, "s", "g", target, block=0.05)
            deadline = time.monotonic() + 30
            while len(seen) < 300:
                assert time.monotonic() < deadline
                await asyncio.sleep(0.01)
            await asyncio.to_thread(redis_server.restart, 0.5)
            while set(seen) != set(range(2000)) or await broker.pending("s", "g"):
                assert time.monotonic() < deadline + 30, f"{len(set(seen))} of 2000 handled"
                await asyncio.sleep(0.05)
            cell = system.cell_of(bridge)
            assert cell.restarts >= 1  # the lost connection failed the bridge; it was restarted
            stats = broker.stats.consumer("s", "g", cell.actor.consumer)  # type: ignore[attr-defined]
            assert stats.connection_failures >= 1
            assert bridge.is_alive
    finally:
        await broker.close()


class Nop(Actor):
    def receive(self, message: Any) -> None:
        return None


async def test_an_unreachable_broker_is_retried_with_backoff_and_logged_once(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """No server: the bridge retries in place after 1, 2, 4, 4 s (virtual), logs one
    WARNING line for the outage, and stays alive (an outage does not spend the restart
    intensity of its supervisor)."""
    from troupe import VirtualClock
    from troupe.brokers.servers import free_port

    broker = connect(
        f"redis://app:s3cret@127.0.0.1:{free_port()}/0",
        reconnect=Backoff(initial=1.0, maximum=4.0, multiplier=2.0, jitter="none"),
    )
    clock = VirtualClock()
    caplog.set_level(logging.INFO)
    async with ActorSystem(clock=clock) as system:
        target = system.spawn(Nop)
        bridge = system.spawn(ConsumerBridge, broker, "s", "g", target, consumer="c", name="br")
        cell = system.cell_of(bridge)
        stats = broker.stats.consumer("s", "g", "c")

        async def failures_reach(n: int) -> None:
            deadline = time.monotonic() + 10
            while stats.connection_failures < n:
                assert time.monotonic() < deadline, stats
                await asyncio.sleep(0.005)
            await asyncio.sleep(0.05)

        await failures_reach(1)  # the first attempt fails at once
        for wait, expected in ((1.0, 2), (2.0, 3), (4.0, 4), (4.0, 5)):
            await clock.advance(wait - 0.01)
            await asyncio.sleep(0.05)
            assert stats.connection_failures == expected - 1  # still backing off
            await clock.advance(0.01)
            await failures_reach(expected)
        assert cell.restarts == 0
        assert bridge.is_alive
    await broker.close()
    lines = [r for r in caplog.records if r.levelno >= logging.WARNING]
    assert len(lines) == 1, [r.getMessage() for r in lines]
    line = lines[0].getMessage()
    assert "br" in line and "127.0.0.1" in line and "Connect" in line
    assert "s3cret" not in caplog.text


async def test_a_lost_connection_is_one_log_line_naming_bridge_broker_and_cause(
    redis_url: str, redis_server: RedisServer, caplog: pytest.LogCaptureFixture
) -> None:
    broker = connect(redis_url, reconnect=Backoff(initial=0.05, maximum=0.2))
    try:
        async with ActorSystem() as system:
            target = system.spawn(Nop)
            bridge = system.spawn(
                ConsumerBridge, broker, "s", "g", target, name="orders.in", block=0.05
            )
            stats = broker.stats.consumer("s", "g", system.cell_of(bridge).actor.consumer)  # type: ignore[attr-defined]
            await eventually(lambda: stats.lag is not None, timeout=10)
            caplog.clear()
            caplog.set_level(logging.INFO)
            await asyncio.to_thread(redis_server.kill)
            await eventually(lambda: stats.connection_failures >= 1, timeout=10)
            await asyncio.sleep(0.3)
            lost = [r for r in caplog.records if r.levelno >= logging.WARNING]
            await asyncio.to_thread(redis_server.start)
            await eventually(lambda: system.cell_of(bridge).restarts >= 1, timeout=10)
    finally:
        await broker.close()
    first = lost[0].getMessage()
    assert "orders.in" in first and redis_url.split("@")[-1].split("/")[0] in first
    assert "Traceback" not in caplog.text and lost[0].exc_info is None
    # the loss, then at most one line for the outage that the restarted bridge sees
    assert len(lost) <= 2, [r.getMessage() for r in lost]


async def test_a_supervised_bridge_is_restarted_by_its_supervisor(
    redis_url: str, redis_server: RedisServer
) -> None:
    from troupe.supervisors.spec import ChildSpec, SupervisorSpec

    broker = connect(redis_url, reconnect=Backoff(initial=0.05, maximum=0.2))
    seen: list[int] = []
    try:
        await broker.ensure_group("s", "g")
        await broker.publish_messages("s", [broker.message(i) for i in range(500)])
        async with ActorSystem() as system:
            system.spawn(Slow, seen, name="slow")
            spec = SupervisorSpec(
                children=[
                    ChildSpec(
                        ConsumerBridge,
                        args=(broker, "s", "g", "slow"),
                        kwargs={"block": 0.05, "consumer": "c"},
                        name="bridge",
                    )
                ],
                max_restarts=50,
                within=60.0,
                backoff=Backoff(initial=0.05, maximum=0.2),
            )
            spec.spawn(system)
            deadline = time.monotonic() + 30
            while len(seen) < 100:
                assert time.monotonic() < deadline
                await asyncio.sleep(0.01)
            await asyncio.to_thread(redis_server.restart, 0.3)
            while set(seen) != set(range(500)) or await broker.pending("s", "g"):
                assert time.monotonic() < deadline + 30, f"{len(set(seen))} of 500 handled"
                await asyncio.sleep(0.05)
            bridge = system.lookup("bridge")
            assert system.cell_of(bridge).restarts >= 1
            assert broker.stats.consumer("s", "g", "c").connection_failures >= 1
    finally:
        await broker.close()
