"""Sharded entities on the memory broker: state with positions, skip of redeliveries,
passivation, LRU bound, in-place retry then DLQ, and shard handover between members."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest

from troupe import ActorSystem, ConfigError
from troupe.actors.entities import Entities, Entity, shard_of
from troupe.brokers import connect
from troupe.brokers.message import ERROR_REASON
from troupe.brokers.state import MemoryStateStore, Saved


class Counter(Entity):
    """Adds each event's amount to its key's total; keeps the sequence numbers seen."""

    def initial_state(self) -> dict[str, Any]:
        return {"total": 0, "seqs": []}

    def handle(self, message: dict[str, Any]) -> None:
        if message.get("boom"):
            raise ValueError("boom")
        self.state["total"] += message["add"]
        self.state["seqs"].append(message["seq"])


async def wait_for(predicate: Any, timeout: float = 10.0) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not predicate():
        assert loop.time() < deadline, "timed out"
        await asyncio.sleep(0.02)


def totals(store: MemoryStateStore, kind: str) -> dict[str, dict[str, Any]]:
    return {k: json.loads(r.state) for (t, k), r in store.records.items() if t == kind}


async def test_events_fold_into_saved_state_with_their_position() -> None:
    broker = connect("memory://")
    async with ActorSystem() as system:
        counters = Entities(system, broker, Counter, kind="counter", shards=4, lease_ttl=1.0)
        await counters.start()
        for seq in range(60):
            await counters.ref(f"k{seq % 6}").send({"add": seq, "seq": seq})
        store = counters.settings.store
        assert isinstance(store, MemoryStateStore)
        await wait_for(lambda: sum(len(s["seqs"]) for s in totals(store, "counter").values()) == 60)
        state = totals(store, "counter")
        for k in range(6):
            seqs = list(range(k, 60, 6))
            assert state[f"k{k}"] == {"total": sum(seqs), "seqs": seqs}  # order per key kept
        record = store.records[("counter", "k0")]
        assert record.position  # the last applied entry id is saved with the state
        assert sum(s.activations for s in counters.stats.values()) == 6
        await counters.stop()


async def test_a_message_at_or_before_the_saved_position_is_not_applied_again() -> None:
    broker = connect("memory://")
    async with ActorSystem() as system:
        counters = Entities(system, broker, Counter, kind="dup", shards=1, lease_ttl=1.0)
        store = counters.settings.store
        assert isinstance(store, MemoryStateStore)
        for seq in range(3):
            await counters.ref("k").send({"add": 1, "seq": seq})
        # a crash after entry 1 was saved, before its ack: state says position 1
        store.records[("dup", "k")] = Saved(json.dumps({"total": 2, "seqs": [0, 1]}), "1")
        await counters.start()
        await wait_for(lambda: totals(store, "dup").get("k", {}).get("seqs") == [0, 1, 2])
        assert totals(store, "dup")["k"]["total"] == 3
        assert sum(s.skipped for s in counters.stats.values()) == 2
        await counters.stop()


async def test_idle_entities_passivate_and_memory_stays_bounded() -> None:
    broker = connect("memory://")
    async with ActorSystem() as system:
        counters = Entities(
            system, broker, Counter, kind="lru", shards=1, lease_ttl=1.0,
            max_active=5, passivate_after=0.3,
        )
        await counters.start()
        for seq in range(20):
            await counters.ref(f"k{seq}").send({"add": 1, "seq": seq})
        stats = counters.stats
        await wait_for(lambda: sum(s.saved for s in stats.values()) == 20)
        assert max(s.active for s in stats.values()) <= 5
        await wait_for(lambda: sum(s.active for s in stats.values()) == 0)
        assert sum(s.passivations for s in stats.values()) == 20
        # a passivated entity comes back with its saved state
        await counters.ref("k3").send({"add": 5, "seq": 99})
        store = counters.settings.store
        assert isinstance(store, MemoryStateStore)
        await wait_for(lambda: totals(store, "lru")["k3"]["total"] == 6)
        await counters.stop()


async def test_a_failing_message_is_retried_in_place_then_dead_lettered_in_order() -> None:
    broker = connect("memory://")
    async with ActorSystem() as system:
        counters = Entities(
            system, broker, Counter, kind="poison", shards=1, lease_ttl=1.0, max_attempts=2
        )
        await counters.start()
        await counters.ref("k").send({"add": 1, "seq": 0})
        await counters.ref("k").send({"boom": True, "seq": 1})
        await counters.ref("k").send({"add": 2, "seq": 2})
        store = counters.settings.store
        assert isinstance(store, MemoryStateStore)
        await wait_for(lambda: totals(store, "poison").get("k", {}).get("seqs") == [0, 2])
        dead = await broker.dead_letters("poison.0")
        assert len(dead) == 1 and "boom" in dead[0].headers[ERROR_REASON]
        assert json.loads(dead[0].body) == {"boom": True, "seq": 1}
        await counters.stop()


async def test_members_share_the_shards_and_a_leaver_hands_its_shards_over() -> None:
    broker = connect("memory://")
    async with ActorSystem() as system:
        common = {"kind": "handover", "shards": 4, "lease_ttl": 0.6, "drain_timeout": 1.0}
        a = Entities(system, broker, Counter, member="a", **common)
        b = Entities(system, broker, Counter, member="b", **common)
        await a.start()
        await b.start()
        store = a.settings.store
        assert isinstance(store, MemoryStateStore)
        sent = 0

        async def send_round() -> None:
            nonlocal sent
            for seq in range(40):
                await a.ref(f"k{seq % 8}").send({"add": 1, "seq": sent})
                sent += 1

        loop = asyncio.get_running_loop()
        deadline = loop.time() + 10
        while not sum(s.saved for s in b.stats.values()):  # until b hosts shards of its own
            assert loop.time() < deadline
            await send_round()
            await asyncio.sleep(0.2)
        await send_round()
        await b.stop()  # leaves: its shards go to a
        await send_round()
        await wait_for(lambda: sum(s["total"] for s in totals(store, "handover").values()) == sent)
        for key, state in totals(store, "handover").items():
            assert state["seqs"] == sorted(state["seqs"]), key
        assert len({shard_of(f"k{i}", 4) for i in range(8)}) > 1
        await a.stop()


def test_bad_settings_fail_at_start_naming_the_setting() -> None:
    async def make(**options: Any) -> None:
        async with ActorSystem() as system:
            Entities(system, connect("memory://"), Counter, kind="bad", **options)

    with pytest.raises(ConfigError, match="max_active"):
        asyncio.run(make(max_active=0))
    with pytest.raises(ConfigError, match="shards"):
        asyncio.run(make(shards=0))
    with pytest.raises(ConfigError, match="passivate_after"):
        asyncio.run(make(passivate_after=0))


async def test_metrics_show_active_entities_activations_and_save_latency_per_shard() -> None:
    from prometheus_client import CollectorRegistry, generate_latest

    from troupe.actors.entities.metrics import EntityCollector

    broker = connect("memory://")
    async with ActorSystem() as system:
        counters = Entities(system, broker, Counter, kind="metered", shards=2, lease_ttl=1.0)
        await counters.start()
        keys = [f"k{i}" for i in range(6)]
        for seq, key in enumerate(keys):
            await counters.ref(key).send({"add": 1, "seq": seq})
        await wait_for(lambda: sum(s.saved for s in counters.stats.values()) == 6)
        registry = CollectorRegistry()
        registry.register(EntityCollector({"metered": counters.stats}))
        text = generate_latest(registry).decode()
        for shard in {shard_of(k, 2) for k in keys}:
            n = sum(1 for k in keys if shard_of(k, 2) == shard)
            assert f'troupe_entities_active{{kind="metered",shard="{shard}"}} {n}.0' in text
            activations = f'troupe_entity_activations_total{{kind="metered",shard="{shard}"}}'
            assert f"{activations} {n}.0" in text
        assert "troupe_entity_save_seconds_total" in text
        await counters.stop()


def test_docs_inventory_example_prints_what_it_says(tmp_path: Any) -> None:
    import re
    import subprocess
    import sys
    from pathlib import Path

    page = Path(__file__).resolve().parents[2] / "docs" / "guides" / "entities.md"
    section = page.read_text().split("# Sharded entities", 1)[1]
    code = re.search(r"```python\n(.*?)```", section, re.S)
    assert code is not None
    done = subprocess.run(
        [sys.executable, "-c", code.group(1)], cwd=tmp_path, capture_output=True, text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines() == [
        """{'sku-1': '{"on_hand": 10, "reserved": 3}', 'sku-2': '{"on_hand": 5, "reserved": 0}'}"""
    ]


class RevokedWhileLoading(MemoryStateStore):
    """A store whose load sees the shard revoked before it returns (a rebalance whose
    drain gave up waiting on the activation)."""

    def __init__(self, access: OneShard) -> None:
        super().__init__()
        self.access = access

    async def load(self, kind: str, shard: int, keys: Any) -> dict[str, Saved]:
        saved = await super().load(kind, shard, keys)
        self.access.owned = False
        return saved


class OneShard:
    """A placement with one shard, owned until a test says not."""

    owned = True

    def shard_of(self, headers: Any) -> int:
        return 0

    def owns(self, shard: int) -> bool:
        return self.owned

    def fence(self, shard: int) -> None:
        return None

    def save_failed(self, shard: int, error: BaseException) -> None:
        pass

    def host_failed(self, error: BaseException) -> None:
        pass


async def test_a_shard_revoked_during_activation_keeps_no_entity() -> None:
    from troupe.actors.entities.host import EntityHost, EntitySettings, ShardMoved
    from troupe.brokers.message import ENTRY_ID, KEY

    access = OneShard()
    settings = EntitySettings(
        kind="revoked", factory=Counter, store=RevokedWhileLoading(access), broker=connect("memory://")
    )
    async with ActorSystem() as system:
        host = system.spawn(EntityHost, settings, access)
        with pytest.raises(ShardMoved, match="while activating"):
            await host.ask({"add": 1, "seq": 0}, headers={KEY: "k", ENTRY_ID: "1-0"})
        # no entity loaded for a shard it lost stays in memory, and nothing was saved
        assert settings.shard_stats(0).active == 0
        assert settings.store.records == {}
