"""A key holder killed with kill -9 after its effect and before marking the key done.

With ``Atomic`` (the effect's writes commit with the completion) every effect
happens once; with a plain effect the documented outcome holds: the next
duplicate runs it again once the dead holder's lease ran out. Either way a
duplicate waits about one lease of the default (5 s), not 30 s.
"""

from __future__ import annotations

import asyncio
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from redis.asyncio import Redis

from troupe.actors.idempotency import Atomic, Idempotent
from troupe.brokers.redis.idempotency import RedisIdempotencyStore

pytestmark = pytest.mark.broker

HOLDER = Path(__file__).with_name("idempotency_holder.py")
DEFAULT_LEASE = Idempotent.__init__.__kwdefaults__["lease"]  # type: ignore[index]


def start_holder(url: str, mode: str, keys: int) -> subprocess.Popen[bytes]:
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    return subprocess.Popen(
        [sys.executable, str(HOLDER), url, mode, str(keys)],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


async def wait_for_log(client: Redis, entry: bytes, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while entry not in await client.lrange("holder:log", 0, -1):
        assert time.monotonic() < deadline, f"holder never logged {entry!r}"
        await asyncio.sleep(0.01)


def kill(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is None:
        os.kill(process.pid, signal.SIGKILL)
    process.wait(timeout=10)


async def duplicate(client: Redis, key: str) -> tuple[object, float]:
    """Run the key again, as a redelivery would; returns the result and the wait."""
    guard = Idempotent(RedisIdempotencyStore(client))
    began = time.monotonic()
    result = await guard.run(
        key, lambda: Atomic(f"done {key}", lambda pipe: pipe.hincrby("effects", key, 1))
    )
    return result, time.monotonic() - began


async def test_default_lease_is_seconds() -> None:
    assert DEFAULT_LEASE <= 5.0


async def test_plain_effect_runs_again_after_the_holder_dies(redis_url: str) -> None:
    """The documented outcome of the non-atomic form: not once, unless idempotent."""
    client = Redis.from_url(redis_url)
    holder = start_holder(redis_url, "plain", 1)
    try:
        await wait_for_log(client, b"applied k0")
        kill(holder)
        result, waited = await duplicate(client, "k0")
        assert result == "done k0"
        assert await client.hget("effects", "k0") == b"2"  # applied by both
        assert waited <= DEFAULT_LEASE + 1.5, waited  # about one lease, not 30 s
    finally:
        holder.kill()
        await client.aclose()


async def test_atomic_effect_killed_before_its_commit_happens_once(redis_url: str) -> None:
    client = Redis.from_url(redis_url)
    holder = start_holder(redis_url, "atomic", 1)
    try:
        await wait_for_log(client, b"computed k0")
        kill(holder)
        result, waited = await duplicate(client, "k0")
        assert result == "done k0"
        assert await client.hget("effects", "k0") == b"1"
        assert waited <= DEFAULT_LEASE + 1.5, waited
        result, waited = await duplicate(client, "k0")  # later duplicates: stored answer
        assert result == "done k0" and waited < 1.0
        assert await client.hget("effects", "k0") == b"1"
    finally:
        holder.kill()
        await client.aclose()


@pytest.mark.parametrize(("holders", "seed"), [(1, 1), (3, 2)])
async def test_atomic_effects_are_once_whenever_a_holder_is_killed(
    redis_url: str, holders: int, seed: int
) -> None:
    """One holder, or three contending for the same keys, one killed at a random point."""
    keys = 60
    client = Redis.from_url(redis_url)
    processes = [start_holder(redis_url, "atomic-stream", keys) for _ in range(holders)]
    try:
        deadline = time.monotonic() + 20
        while not await client.llen("holder:log"):
            assert time.monotonic() < deadline, "no holder started"
            await asyncio.sleep(0.01)
        await asyncio.sleep(random.Random(seed).uniform(0.0, 0.15))
        kill(processes[0])
        for n in range(keys):
            result, _ = await duplicate(client, f"k{n}")
            assert result == f"done k{n}"
        effects = await client.hgetall("effects")
        assert {k.decode(): int(v) for k, v in effects.items()} == {f"k{n}": 1 for n in range(keys)}
    finally:
        for process in processes:
            kill(process)
        await client.aclose()
