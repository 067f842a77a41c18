"""Entities across 3 OS processes on Redis and on Kafka, with kill -9 every few seconds,
one member joining and one leaving mid-stream: every key's final state is the exact sum
of its events, each applied once, in publish order per key."""

from __future__ import annotations

import asyncio
import json
import signal
import subprocess
import sys
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

import pytest

from troupe.actors.entities import Entities
from troupe.brokers import Broker, Message, connect
from troupe.brokers.servers.pytest_plugin import (  # noqa: F401
    kafka_server,
    kafka_url,
    redis_server,
    redis_url,
)
from troupe.brokers.state import StateStore

from .entity_member import OPTIONS, connect_member

MEMBER = Path(__file__).with_name("entity_member.py")
ROOT = Path(__file__).resolve().parents[2]
KEYS = 1000
EVENTS = 50_000
KILL_EVERY = 2.5  # seconds between kill -9s while the events flow


class Member:
    """One member process."""

    def __init__(self, url: str, kind: str, side: Path, name: str, *extra: str) -> None:
        self.name = name
        self.side = side
        with open(side / "members.log", "ab") as log:
            self.process = subprocess.Popen(
                [sys.executable, str(MEMBER), url, kind, str(side), name, *extra],
                cwd=ROOT,
                stdout=log,
                stderr=log,
            )

    async def ready(self) -> None:
        flag = self.side / f"ready-{self.process.pid}"
        deadline = time.monotonic() + 60
        while not flag.exists():
            assert self.process.poll() is None, f"member {self.name} died at start"
            assert time.monotonic() < deadline, f"member {self.name} not ready"
            await asyncio.sleep(0.05)

    def kill(self) -> None:
        self.process.send_signal(signal.SIGKILL)
        self.process.wait()

    async def leave(self) -> None:
        self.process.send_signal(signal.SIGTERM)
        await asyncio.to_thread(self.process.wait)


async def load_states(
    broker: Broker, kind: str, keys: list[str], store: StateStore | None = None
) -> dict[str, Any]:
    """Every key's saved state, read through ``store`` (default: the broker's)."""
    from troupe.actors.entities import default_store
    from troupe.actors.entities.sharding import shard_of

    if store is None:
        store, _ = default_store(broker)
    out: dict[str, Any] = {}
    partitioned = broker.capabilities.offsets
    by_shard: dict[int, list[str]] = defaultdict(list)
    for key in keys:
        by_shard[-1 if partitioned else shard_of(key, OPTIONS["shards"])].append(key)
    if partitioned:  # the changelog: look in every partition
        for partition in range(OPTIONS["shards"]):
            found = await store.load(kind, partition, keys)
            out.update({k: json.loads(r.state) for k, r in found.items()})
    else:
        for shard, shard_keys in by_shard.items():
            found = await store.load(kind, shard, shard_keys)
            out.update({k: json.loads(r.state) for k, r in found.items()})
    await store.close()
    return out


async def run_scenario(
    url: str, tmp_path: Path, store_url: str | None = None, events: int = EVENTS
) -> None:
    """The scenario; ``store_url``: a Redis holding the state and leases (RabbitMQ)."""
    kind = "tally"
    side = tmp_path
    broker = connect_member(url)
    extra = (store_url,) if store_url else ()
    store: StateStore | None = None
    if store_url:
        from troupe.actors.entities.rabbitmq import declare_shards
        from troupe.brokers.redis import RedisStateStore

        store_broker = connect(store_url)
        store = RedisStateStore(store_broker)  # type: ignore[arg-type]
        declare_shards(broker, kind, OPTIONS["shards"])  # as the members declare them
    members = [Member(url, kind, side, f"m{i}", *extra) for i in range(3)]
    for member in members:
        await member.ready()
    entities = Entities.__new__(Entities)  # only for publish(): which stream a key goes to
    entities.kind = kind
    entities.partitioned = broker.capabilities.offsets
    entities.shards = OPTIONS["shards"]
    expected: dict[str, list[int]] = defaultdict(list)
    amounts: dict[str, int] = defaultdict(int)
    started = time.monotonic()
    next_kill = started + KILL_EVERY
    spawned = 3
    joined = left = False
    per_batch = 500
    for first in range(0, events, per_batch):
        batches: dict[str, list[Message]] = defaultdict(list)
        for seq in range(first, min(first + per_batch, events)):
            key = f"k{(seq * 7919) % KEYS}"
            add = seq % 13 + 1
            expected[key].append(seq)
            amounts[key] += add
            publish = entities.publish(key, None)
            assert publish.stream is not None
            batches[publish.stream].append(broker.message({"add": add, "seq": seq}, key=key))
        for stream, messages in batches.items():
            await broker.publish_messages(stream, messages)
        await asyncio.sleep(0.1)  # the events flow for over 10 s
        now = time.monotonic()
        if now >= next_kill:
            next_kill = now + KILL_EVERY
            victim = members.pop(0)
            victim.kill()
            members.append(Member(url, kind, side, f"m{spawned}", *extra))  # back to 3
            spawned += 1
        if not joined and first >= events // 3:
            joined = True
            members.append(Member(url, kind, side, f"m{spawned}", *extra))  # one joins
            spawned += 1
        if not left and first >= events // 2:
            left = True
            await members.pop(0).leave()  # one leaves
    keys = sorted(expected)
    deadline = time.monotonic() + 60
    states: dict[str, Any] = {}
    try:
        while time.monotonic() < deadline:
            states = await load_states(broker, kind, keys, store)
            if all(len(states.get(k, {}).get("seqs", [])) >= len(expected[k]) for k in keys):
                break
            await asyncio.sleep(1.0)
        for key in keys:
            assert states[key]["seqs"] == expected[key], key  # each once, in order
            assert states[key]["total"] == amounts[key], key
        assert sum(len(s["seqs"]) for s in states.values()) == events
    finally:
        for member in members:
            if member.process.poll() is None:
                member.kill()
        await broker.close()
        if store_url:
            await store_broker.close()


async def test_entities_survive_kills_joins_and_leaves_on_redis(
    redis_url: str, tmp_path: Path  # noqa: F811
) -> None:
    await run_scenario(redis_url, tmp_path)


@pytest.mark.timeout(100)
async def test_entities_survive_kills_joins_and_leaves_on_kafka(
    kafka_url: str, tmp_path: Path  # noqa: F811
) -> None:
    await run_scenario(kafka_url, tmp_path)
