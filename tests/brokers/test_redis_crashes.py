"""Attempts are counted when a handler starts, durably: consumer processes killed with -9
in a loop, and a poison message that kills its own process (``chaos_consumer.py``)."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import redis.asyncio as aioredis

from tests.helpers import eventually
from troupe.brokers import connect
from troupe.brokers.message import DELIVERIES, ERROR_REASON

CONSUMER = Path(__file__).with_name("chaos_consumer.py")
MAX_DELIVERIES = 3


def start_consumer(url: str, name: str, journals: Path) -> subprocess.Popen[bytes]:
    args = [url, "orders", "g", name, str(journals), str(MAX_DELIVERIES)]
    return subprocess.Popen(
        [sys.executable, str(CONSUMER), *args],
        env=dict(os.environ, PYTHONUNBUFFERED="1"),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


async def counts(client: aioredis.Redis, key: str) -> dict[int, int]:
    return {int(k): int(v) for k, v in (await client.hgetall(key)).items()}


async def wait_ready(client: aioredis.Redis, process: subprocess.Popen[bytes]) -> None:
    async def ready() -> bool:
        return bool(await client.exists(f"ready:{process.pid}")) or process.poll() is not None

    await eventually(ready, timeout=30, interval=0.02)


@pytest.mark.timeout(120)
async def test_kill_9_loop_dead_letters_only_poison_after_exactly_max_starts(
    redis_url: str, tmp_path: Path
) -> None:
    """A backlog of 3,000 healthy messages and 4 poison ones; the consumer process is
    killed with -9 at random times, 12 times, under its own name and new ones."""
    rng = random.Random(20261130)
    healthy, poison = 3000, [3000, 3001, 3002, 3003]
    broker = connect(redis_url)
    client = aioredis.Redis.from_url(redis_url)
    journals = tmp_path / "journals"
    processes: list[subprocess.Popen[bytes]] = []
    try:
        await broker.ensure_group("orders", "g")
        payloads: list[dict[str, object]] = [{"n": i} for i in range(healthy)]
        for k, n in enumerate(poison):
            payloads.insert(400 + 700 * k, {"n": n, "poison": True})
        for start in range(0, len(payloads), 500):
            await broker.publish_messages(
                "orders", [broker.message(p) for p in payloads[start : start + 500]]
            )
        for kill in range(12):
            name = "main" if kill % 2 == 0 else f"temp-{kill}"  # same and new names
            process = start_consumer(redis_url, name, journals)
            processes.append(process)
            await wait_ready(client, process)
            time.sleep(rng.uniform(0.2, 0.7))  # noqa: ASYNC251 - the consumer runs elsewhere
            process.send_signal(signal.SIGKILL)  # no drain, no ack, no cleanup
            process.wait()
        handled_before = len(await counts(client, "handled"))
        assert handled_before < healthy  # the kills came mid-backlog
        final = start_consumer(redis_url, "final", journals)
        processes.append(final)

        async def done() -> bool:
            handled = await client.hlen("handled")
            dead = await client.xlen("orders:dlq")
            return bool(handled == healthy and dead == len(poison))

        await eventually(done, timeout=90, interval=0.05)

        async def settled() -> bool:
            return await broker.pending("orders", "g") == 0

        await eventually(settled, timeout=30, interval=0.05)
        handled = await counts(client, "handled")
        starts = await counts(client, "starts")
        dead = await broker.dead_letters("orders")
        assert set(handled) == set(range(healthy))  # every healthy message handled
        assert sorted(broker.serializer.loads(m.body)["n"] for m in dead) == poison
        story = {n: await client.lrange(f"log:{n}", 0, -1) for n in poison}  # pid, attempt
        for message in dead:  # only poison, each after exactly max_deliveries starts
            assert message.headers[DELIVERIES] == str(MAX_DELIVERIES)
            reason = message.headers[ERROR_REASON]
            last_pid = int(story[broker.serializer.loads(message.body)["n"]][-1].split()[1])
            if last_pid == final.pid:  # its last start ran in a consumer that lived on
                assert "is poison" in reason, story
            else:  # killed after its last start, maybe before it could move it: either
                assert "is poison" in reason or f"started {MAX_DELIVERIES} times" in reason
        assert {n: starts[n] for n in poison} == dict.fromkeys(poison, MAX_DELIVERIES), story
        redelivered = [n for n in range(healthy) if starts[n] > 1]
        assert redelivered, "no healthy message was ever redelivered: the kills tested nothing"
        assert await client.hlen("orders:attempts:g") == 0  # the record is cleaned on settle
    finally:
        for process in processes:
            if process.poll() is None:
                process.kill()
                process.wait()
        await client.aclose()
        await broker.close()


@pytest.mark.timeout(120)
async def test_a_message_that_kills_its_process_reaches_the_dlq_after_max_starts(
    redis_url: str, tmp_path: Path
) -> None:
    """Each start of the message calls os._exit: the count survives in the journal, is
    folded in by the next consumer, and the fourth consumer dead-letters it unstarted."""
    broker = connect(redis_url)
    client = aioredis.Redis.from_url(redis_url)
    journals = tmp_path / "journals"
    processes: list[subprocess.Popen[bytes]] = []
    try:
        await broker.ensure_group("orders", "g")
        payloads: list[dict[str, object]] = [{"n": i} for i in range(20)]
        payloads.insert(10, {"n": 99, "exit": True})
        await broker.publish_messages("orders", [broker.message(p) for p in payloads])
        exits = 0
        names = ["c", "c", "other", "c", "c"]  # a new name takes it over after claim_idle
        for name in names:
            process = start_consumer(redis_url, name, journals)
            processes.append(process)

            async def exited_or_dead(process: subprocess.Popen[bytes] = process) -> bool:
                return process.poll() is not None or await client.xlen("orders:dlq") == 1

            await eventually(exited_or_dead, timeout=30, interval=0.02)
            if process.poll() is None:
                break  # the message went to the DLQ; this consumer lives on
            assert process.returncode == 3
            exits += 1
        assert exits == MAX_DELIVERIES  # one process death per start

        async def all_handled() -> bool:
            return bool(await client.hlen("handled") == 20)

        await eventually(all_handled, timeout=30, interval=0.05)
        starts = await counts(client, "starts")
        assert starts[99] == MAX_DELIVERIES
        [dead] = await broker.dead_letters("orders")
        assert broker.serializer.loads(dead.body) == {"n": 99, "exit": True}
        assert f"started {MAX_DELIVERIES} times" in dead.headers[ERROR_REASON]

        async def settled() -> bool:
            return await broker.pending("orders", "g") == 0

        await eventually(settled, timeout=30, interval=0.05)
    finally:
        for process in processes:
            if process.poll() is None:
                process.kill()
                process.wait()
        await client.aclose()
        await broker.close()
