"""Entity state on a compacted Kafka changelog topic (Kafka Streams' state store way).

The changelog of entity type ``kind`` is the topic ``<kind>.changelog`` (namespace
prefixed), compacted, with as many partitions as the source topic: the record of a key
read from source partition *p* goes to changelog partition *p*, keyed by the entity key,
its value the position, a newline and the state's JSON. The member that owns source
partition *p* restores changelog partition *p* into a local table on the first load
after the assignment (read from the beginning to the end offset) and keeps it current
with its own saves; ``release`` (on revoke) forgets the table, also one still being
restored (it would be stale when the partition comes back).

Memory: the table holds every key ever saved in the owned partitions (not only the
active entities), as the record's value bytes (``position\nstate``, parsed on load):
about 110 bytes per record plus its key and state JSON (147 bytes for a key ``m123``
and a 25-byte state; ``benchmarks/entities.py``). A member owning 1 million keys of
such size holds about 150 MB; past that, use the Redis store (loads only the keys
activated) or more members. The bound is the key count of the owned partitions:
Kafka cannot read one key's record without scanning its partition.

Kafka has no lease to check: the consumer group's assignment is the only placement, so
a save is not fenced (a member that lost its partitions without a revoke — a long pause
past the session timeout — could still write; Kafka Streams fences that with
transactions, which troupe does not use).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from aiokafka import TopicPartition
from aiokafka import errors as kerr
from aiokafka.admin import NewTopic

from ..state import Fence, Saved, StateStore

if TYPE_CHECKING:
    from .broker import KafkaBroker

logger = logging.getLogger(__name__)


class KafkaChangelogStore(StateStore):
    """Entity records on a compacted changelog topic, restored per assigned partition."""

    def __init__(self, broker: KafkaBroker) -> None:
        self.broker = broker
        self._tables: dict[tuple[str, int], dict[str, bytes]] = {}  # key -> record value
        self._created: set[str] = set()
        self._restoring: dict[tuple[str, int], asyncio.Future[dict[str, bytes]]] = {}

    def topic(self, kind: str) -> str:
        """The changelog topic of ``kind``."""
        return self.broker.topic(f"{kind}.changelog")

    async def _ensure(self, kind: str) -> str:
        topic = self.topic(kind)
        if topic in self._created:
            return topic
        admin = await self.broker.admin()
        new = NewTopic(
            topic,
            self.broker.partitions,
            self.broker.replication,
            topic_configs={"cleanup.policy": "compact"},
        )
        async with self.broker.errors(f"create topic {topic}"):
            try:
                response = await admin.create_topics([new])
                for _name, code, *_ in response.topic_errors:
                    if code and code != kerr.TopicAlreadyExistsError.errno:
                        raise kerr.for_code(code)()
            except kerr.TopicAlreadyExistsError:
                pass
        self._created.add(topic)
        return topic

    async def _table(self, kind: str, shard: int) -> dict[str, bytes]:
        at = (kind, shard)
        table = self._tables.get(at)
        if table is not None:
            return table
        pending = self._restoring.get(at)
        if pending is None:
            pending = asyncio.get_running_loop().create_future()
            self._restoring[at] = pending
            try:
                restored = await self._restore(kind, shard)
            except BaseException as exc:
                if self._restoring.get(at) is pending:
                    del self._restoring[at]
                pending.set_exception(exc)
                pending.exception()  # retrieved: the waiters (if any) raise it
                raise
            if self._restoring.get(at) is pending:  # kept unless released meanwhile
                del self._restoring[at]
                self._tables[at] = restored
            pending.set_result(restored)
            return restored
        return await pending

    async def _restore(self, kind: str, shard: int) -> dict[str, bytes]:
        topic = await self._ensure(kind)
        tp = TopicPartition(topic, shard)
        consumer = self.broker.consumer(group_id=None, enable_auto_commit=False)
        table: dict[str, bytes] = {}
        async with self.broker.errors(f"restore {topic} partition {shard}"):
            await consumer.start()
            try:
                consumer.assign([tp])
                await consumer.seek_to_beginning(tp)
                end = (await consumer.end_offsets([tp]))[tp]
                while await consumer.position(tp) < end:
                    batches = await consumer.getmany(tp, timeout_ms=500)
                    for record in batches.get(tp, ()):
                        if record.key is None:
                            continue
                        key = record.key.decode()
                        if record.value is None:
                            table.pop(key, None)
                            continue
                        table[key] = record.value
            finally:
                await consumer.stop()
        logger.debug("restored %d %s records of partition %d", len(table), kind, shard)
        return table

    async def load(self, kind: str, shard: int, keys: Sequence[str]) -> dict[str, Saved]:
        table = await self._table(kind, shard)
        out: dict[str, Saved] = {}
        for key in keys:
            value = table.get(key)
            if value is not None:
                position, _, state = value.decode().partition("\n")
                out[key] = Saved(state, position)
        return out

    async def save(
        self, kind: str, shard: int, records: Mapping[str, Saved], fence: Fence | None = None
    ) -> None:
        if not records:
            return
        topic = await self._ensure(kind)
        table = await self._table(kind, shard)
        producer = await self.broker.producer()
        async with self.broker.errors(f"save {kind} state to {topic}"):
            futures: list[Any] = []
            values = {k: f"{r.position}\n{r.state}".encode() for k, r in records.items()}
            for key, value in values.items():
                futures.append(
                    await producer.send(topic, value, key=key.encode(), partition=shard)
                )
            await asyncio.gather(*futures)
        table.update(values)

    async def release(self, kind: str, shard: int) -> None:
        self._tables.pop((kind, shard), None)
        # a restore under way (a load when the revoke came) is not kept: the partition's
        # next owner saves after it, and this member may own the partition again later
        self._restoring.pop((kind, shard), None)


__all__ = ["KafkaChangelogStore"]
