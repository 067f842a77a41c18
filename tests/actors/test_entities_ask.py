"""``entities.ref(key).ask(...)``: the handler's result comes back through the remote
reply path once the state is saved; a dead-lettered message raises RemoteError; no
host answering is an AskTimeout naming the entity. On memory and on a real Redis and Kafka."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest

from troupe import ActorSystem, AskTimeout, ConfigError
from troupe.actors import RemoteError
from troupe.actors.entities import Entities, Entity
from troupe.brokers import Broker, connect
from troupe.brokers.servers.pytest_plugin import (  # noqa: F401
    kafka_server,
    kafka_url,
    redis_server,
    redis_url,
)
from troupe.brokers.state import Saved


class Account(Entity):
    """A balance: ``deposit`` answers the new balance, ``withdraw`` refuses an overdraft."""

    def initial_state(self) -> dict[str, Any]:
        return {"balance": 0}

    async def handle(self, message: dict[str, Any]) -> Any:
        if message["op"] == "withdraw" and message["amount"] > self.state["balance"]:
            raise ValueError(f"{self.key}: insufficient funds")
        sign = 1 if message["op"] == "deposit" else -1
        self.state["balance"] += sign * message["amount"]
        return {"balance": self.state["balance"]}


async def saved(entities: Entities, key: str) -> dict[str, Any] | None:
    """The saved state of ``key``: on Kafka from whichever changelog partition holds it
    (the key's partition is the producer's choice), else from the key's shard."""
    from troupe.actors.entities import shard_of

    store = entities.settings.store
    if entities.partitioned:
        shards = range(entities.broker.partitions)  # type: ignore[attr-defined]
    else:
        shards = range(shard_of(key, entities.shards), shard_of(key, entities.shards) + 1)
    for shard in shards:
        record: Saved | None = (await store.load(entities.kind, shard, [key])).get(key)
        if record is not None:
            return dict(json.loads(record.state))
    return None


async def asks_answer_after_the_save(broker: Broker) -> None:
    async with ActorSystem(ask_timeout=20.0) as system:
        accounts = Entities(
            system, broker, Account, kind="acct", shards=3, lease_ttl=1.0, max_attempts=2
        )
        await accounts.start()
        ref = accounts.ref("alice")
        assert await ref.ask({"op": "deposit", "amount": 5}) == {"balance": 5}
        assert await saved(accounts, "alice") == {"balance": 5}  # saved before the reply
        replies = await asyncio.gather(
            *(accounts.ref(f"k{i}").ask({"op": "deposit", "amount": i}) for i in range(20))
        )
        assert replies == [{"balance": i} for i in range(20)]
        with pytest.raises(RemoteError) as caught:
            await ref.ask({"op": "withdraw", "amount": 50})
        assert caught.value.remote_type == "ValueError"
        assert "insufficient funds" in caught.value.remote_message
        assert await ref.ask({"op": "withdraw", "amount": 2}) == {"balance": 3}
        await accounts.stop()


async def test_ask_on_memory_returns_the_result_or_the_handlers_error() -> None:
    await asks_answer_after_the_save(connect("memory://"))


async def test_ask_on_redis_returns_the_result_or_the_handlers_error(
    redis_url: str,  # noqa: F811
) -> None:
    broker = connect(redis_url)
    try:
        await asks_answer_after_the_save(broker)
    finally:
        await broker.close()


async def test_ask_on_kafka_returns_the_result_or_the_handlers_error(
    kafka_url: str,  # noqa: F811
) -> None:
    broker = connect(kafka_url)
    try:
        await asks_answer_after_the_save(broker)
    finally:
        await broker.close()


async def test_ask_without_a_host_times_out_naming_the_entity() -> None:
    broker = connect("memory://")
    async with ActorSystem() as system:
        accounts = Entities(system, broker, Account, kind="acct", shards=2)  # not started
        with pytest.raises(AskTimeout, match="acct:bob"):
            await accounts.ref("bob").ask({"op": "deposit", "amount": 1}, timeout=0.3)
        with pytest.raises(ConfigError, match="timeout"):
            await accounts.ref("bob").ask({"op": "deposit", "amount": 1}, timeout=-1)
        # the ask's message stays in the shard: a host started later applies it once
        await accounts.start()
        assert await accounts.ref("bob").ask({"op": "deposit", "amount": 2}) == {"balance": 3}
        await accounts.stop()
