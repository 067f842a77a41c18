"""Entity state on a real Kafka changelog: saved records restore from the compacted topic
after a release (a revoke), per partition, with the latest record of each key."""

from __future__ import annotations

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
