"""Entity state on a real Kafka changelog: saved records restore from the compacted topic
after a release (a revoke), per partition, with the latest record of each key."""

from __future__ import annotations

import asyncio

from troupe.brokers import connect
from troupe.brokers.kafka import KafkaChangelogStore
from troupe.brokers.state import Saved


async def test_records_restore_from_the_changelog_after_a_release(kafka_url: str) -> None:
    broker = connect(kafka_url, partitions=2)
    store = KafkaChangelogStore(broker)  # type: ignore[arg-type]
    try:
        await store.save("cart", 0, {"a": Saved('{"n": 1}', "0:1"), "b": Saved("{}", "0:2")})
        await store.save("cart", 0, {"a": Saved('{"n": 2}', "0:5")})  # the latest wins
        await store.save("cart", 1, {"c": Saved('{"n": 7}', "1:3")})
        await store.release("cart", 0)
        await store.release("cart", 1)
        other = KafkaChangelogStore(connect(kafka_url, partitions=2))  # type: ignore[arg-type]
        try:
            assert await other.load("cart", 0, ["a", "b", "c"]) == {
                "a": Saved('{"n": 2}', "0:5"),
                "b": Saved("{}", "0:2"),
            }
            assert await other.load("cart", 1, ["c"]) == {"c": Saved('{"n": 7}', "1:3")}
        finally:
            await other.broker.close()
        assert await store.load("cart", 0, ["a"]) == {"a": Saved('{"n": 2}', "0:5")}
    finally:
        await broker.close()


async def test_a_release_during_a_restore_keeps_no_stale_table(kafka_url: str) -> None:
    """A revoke releases a partition while a load still restores it: that table is not
    kept, so a load after the partition came back reads what was saved in between."""
    broker = connect(kafka_url, partitions=1)
    store = KafkaChangelogStore(broker)  # type: ignore[arg-type]
    other = KafkaChangelogStore(connect(kafka_url, partitions=1))  # type: ignore[arg-type]
    try:
        await store.save("cart", 0, {"a": Saved('{"n": 1}', "0:1")})
        await store.release("cart", 0)
        loading = asyncio.ensure_future(store.load("cart", 0, ["a"]))
        await asyncio.sleep(0)  # its restore is under way
        await store.release("cart", 0)  # the partition is revoked meanwhile
        assert await loading == {"a": Saved('{"n": 1}', "0:1")}
        await other.save("cart", 0, {"a": Saved('{"n": 2}', "0:9")})  # its next owner
        assert await store.load("cart", 0, ["a"]) == {"a": Saved('{"n": 2}', "0:9")}
    finally:
        await other.broker.close()
        await broker.close()
