"""Entities on RabbitMQ (a real server): single-active-consumer shard queues under
fenced leases, the state on Redis or in memory; bad store/lease combinations fail at
start; redeliveries are recognised by message id; asks answer; and the 3-process
scenario with kill -9, a join and a leave keeps exact sums in per-key order."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import pytest

from troupe import ActorSystem, ConfigError
from troupe.actors.entities import Entities, Entity, shard_of
from troupe.actors.entities.positions import window_key
from troupe.brokers import Message, connect
from troupe.brokers.redis import RedisShardLeases, RedisStateStore
from troupe.brokers.servers.pytest_plugin import (  # noqa: F401
    rabbitmq_server,
    rabbitmq_url,
    redis_server,
    redis_url,
)
from troupe.brokers.state import MemoryShardLeases, MemoryStateStore

from .test_entities_processes import run_scenario


class Counter(Entity):
    """Adds each event's amount; keeps the sequence numbers; answers the total."""

    def initial_state(self) -> dict[str, Any]:
        return {"total": 0, "seqs": []}

    def handle(self, message: dict[str, Any]) -> int:
        self.state["total"] += message["add"]
        self.state["seqs"].append(message["seq"])
        return int(self.state["total"])


async def wait_for(predicate: Any, timeout: float = 20.0) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not predicate():
        assert loop.time() < deadline, "timed out"
        await asyncio.sleep(0.05)


def totals(store: MemoryStateStore, kind: str) -> dict[str, dict[str, Any]]:
    return {
        k: json.loads(r.state)
        for (t, k), r in store.records.items()
        if t == kind and not k.startswith("\x00")
    }


def test_rabbitmq_needs_a_store_and_leases_that_fence_naming_the_setting() -> None:
    async def make(**options: Any) -> None:
        async with ActorSystem() as system:
            rabbit = connect("amqp://guest:guest@127.0.0.1:5672/")
            Entities(system, rabbit, Counter, kind="bad", **options)

    with pytest.raises(ConfigError, match=r"'store'.*RedisStateStore"):
        asyncio.run(make())
    leases = MemoryShardLeases()
    with pytest.raises(ConfigError, match="'leases'"):
        asyncio.run(make(store=MemoryStateStore(leases)))
    with pytest.raises(ConfigError, match=r"'leases'.*other leases"):
        asyncio.run(make(store=MemoryStateStore(leases), leases=MemoryShardLeases()))
    redis = connect("redis://127.0.0.1:6399/0")
    with pytest.raises(ConfigError, match=r"'leases'.*same Redis"):
        asyncio.run(make(store=RedisStateStore(redis), leases=leases))  # type: ignore[arg-type]


async def test_members_share_single_active_consumer_shards_and_fold_in_order(
    rabbitmq_url: str,  # noqa: F811
    tmp_path: Path,
) -> None:
    leases = MemoryShardLeases()
    store = MemoryStateStore(leases)
    brokers = [connect(rabbitmq_url, journal_dir=tmp_path / f"j{i}") for i in range(2)]
    async with ActorSystem(ask_timeout=20.0) as system:
        members = [
            Entities(
                system,
                broker,
                Counter,
                kind="ctr",
                shards=4,
                lease_ttl=1.0,
                store=store,
                leases=leases,
                member=f"m{i}",
                batch=50,
                block=0.05,
            )
            for i, broker in enumerate(brokers)
        ]
        for member in members:
            await member.start()
        sent: dict[str, list[int]] = {f"k{k}": [] for k in range(8)}

        async def send_wave(first: int, count: int) -> None:
            for seq in range(first, first + count):
                key = f"k{seq % 8}"
                sent[key].append(seq)
                await members[seq % 2].ref(key).send({"add": seq, "seq": seq})
            total = first + count
            await wait_for(
                lambda: sum(len(s["seqs"]) for s in totals(store, "ctr").values()) == total
            )

        def hosted() -> list[set[int]]:
            return [{s for s, st in m.stats.items() if st.active} for m in members]

        await send_wave(0, 200)
        # the first member may hold every shard until the second one's heartbeat is seen:
        # later waves land on the shares the leases settle on
        seq = 200
        while not (hosted()[0] and hosted()[1]) and seq < 2000:
            await asyncio.sleep(0.2)
            await send_wave(seq, 8)
            seq += 8
        assert hosted()[0] and hosted()[1] and not hosted()[0] & hosted()[1]  # shared
        state = totals(store, "ctr")
        for key, seqs in sent.items():
            assert state[key] == {"total": sum(seqs), "seqs": seqs}  # once each, in order
        assert await members[0].ref("k1").ask({"add": 1000, "seq": seq}) == 1000 + sum(sent["k1"])
        # the shard queues are single active consumer: declaring them otherwise is refused
        plain = connect(rabbitmq_url, journal_dir=tmp_path / "plain")
        try:
            with pytest.raises(ConfigError, match="x-single-active-consumer"):
                await plain.ensure_group("ctr.0", "ctr")
        finally:
            await plain.close()
        for member in members:
            await member.stop()
    for broker in brokers:
        await broker.close()


async def test_a_redelivered_message_id_is_not_applied_again(
    rabbitmq_url: str,  # noqa: F811
    redis_url: str,  # noqa: F811
    tmp_path: Path,
) -> None:
    rabbit = connect(rabbitmq_url, journal_dir=tmp_path)
    redis = connect(redis_url)
    store = RedisStateStore(redis)  # type: ignore[arg-type]
    async with ActorSystem() as system:
        counters = Entities(
            system, rabbit, Counter, kind="dup", shards=2, lease_ttl=1.0, store=store,
            leases=RedisShardLeases(redis), batch=10, block=0.05,  # type: ignore[arg-type]
        )  # fmt: skip
        await counters.start()
        shard = shard_of("a", 2)
        first = Message(rabbit.serializer.dumps({"add": 1, "seq": 0}), "a", id="m-0")
        again = Message(first.body, "a", id="m-0")  # a producer's retry after a lost confirm
        second = Message(rabbit.serializer.dumps({"add": 2, "seq": 1}), "a", id="m-1")

        async def state() -> dict[str, Any]:
            found = await store.load("dup", shard, ["a"])
            return json.loads(found["a"].state) if "a" in found else {}

        async def reached(seqs: list[int]) -> None:
            loop = asyncio.get_running_loop()
            deadline = loop.time() + 20
            while (await state()).get("seqs") != seqs:
                assert loop.time() < deadline, await state()
                await asyncio.sleep(0.05)

        await rabbit.publish_messages(f"dup.{shard}", [first])
        await reached([0])
        await asyncio.sleep(0.5)  # acked: the consumer holds it no more
        await rabbit.publish_messages(f"dup.{shard}", [again, second])
        await reached([0, 1])
        window = await store.load("dup", shard, [window_key(shard)])
        assert json.loads(window[window_key(shard)].state) == ["m-0", "m-1"]
        assert (await state())["total"] == 3
        assert sum(s.skipped for s in counters.stats.values()) == 1
        await counters.stop()
    await rabbit.close()
    await redis.close()


@pytest.mark.timeout(120)
async def test_entities_survive_kills_joins_and_leaves_on_rabbitmq(
    rabbitmq_url: str,  # noqa: F811
    redis_url: str,  # noqa: F811
    tmp_path: Path,
) -> None:
    await run_scenario(rabbitmq_url, tmp_path, store_url=redis_url, events=30_000)
