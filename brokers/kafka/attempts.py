"""The durable attempts record of a Kafka consumer group: a compacted topic.

Handler starts are journaled per consumer (:mod:`troupe.brokers.attempts`: a
memory-mapped file, durable against kill -9). What the journal hands over — a
failure seen in-process, or the starts of a dead consumer's journal folded by the
next session on the host — is added here: one record per unsettled entry in the
compacted topic ``<topic>.attempts.<group>`` (one partition), key
``<partition>:<offset>``, value ``{"n": starts, "m": [markers]}``; a settled entry
gets a tombstone (compaction then drops it), so the topic stays as small as the
set of entries with failed or crashed starts.

Every member keeps the record in memory: it reads the topic to its end when it
joins and after each rebalance (partitions it takes over may carry starts of their
previous owner), and writes through it (``acks=all``, awaited) before a retry is
scheduled. Starts are added under their journal marker, so a start folded twice
(a folder that died half-way) counts once; starts of entries below the group's
committed offset (already handled) are not added. Why a topic and not a local file:
a partition moves between hosts on a rebalance, and its starts must move with it.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Awaitable, Callable, Sequence
from typing import TYPE_CHECKING

from aiokafka import TopicPartition

from ..attempts import Start

if TYPE_CHECKING:
    from .broker import KafkaBroker

logger = logging.getLogger(__name__)

MARKERS_KEPT = 16
RETRY_MS = 10  # the record reader's wait before it asks again for metadata (default 100)


def split_entry(entry_id: str) -> tuple[int, int] | None:
    """(partition, offset) of an entry id ``<partition>:<offset>``, None if it is not one."""
    partition, _, offset = entry_id.partition(":")
    try:
        return int(partition), int(offset)
    except ValueError:
        return None


class KafkaAttemptsRecord:
    """Starts per unsettled entry of one (topic, group), mirrored from a compacted topic."""

    def __init__(self, broker: KafkaBroker, stream: str, group: str) -> None:
        self._broker = broker
        self.topic = broker.topic(broker.attempts_topic(stream, group))
        self.counts: dict[str, tuple[int, list[str]]] = {}

    def get(self, entry_id: str) -> int:
        """Starts recorded for ``entry_id`` (0 when none)."""
        found = self.counts.get(entry_id)
        return found[0] if found is not None else 0

    async def load(self) -> None:
        """Read the record topic to its end (replacing what is in memory)."""
        broker = self._broker
        if await broker.ensure_topic(self.topic, compact=True):
            self.counts = {}
            return  # created just now: empty
        tp = TopicPartition(self.topic, 0)
        counts: dict[str, tuple[int, list[str]]] = {}
        async with broker.errors(f"read attempts {self.topic}"):
            consumer = broker.consumer(
                enable_auto_commit=False,
                auto_offset_reset="earliest",
                retry_backoff_ms=RETRY_MS,  # it knows no metadata of the topic yet
            )
            await consumer.start()
            try:
                # the end first: once assigned, the consumer's fetches (which wait up to
                # fetch_max_wait_ms on an idle topic) hold this question back behind them
                end = (await consumer.end_offsets([tp]))[tp]
                if end > 0:  # never written to: empty (compaction keeps the end offset)
                    consumer.assign([tp])
                    await consumer.seek_to_beginning(tp)
                while end > 0 and await consumer.position(tp) < end:
                    batch = await consumer.getmany(tp, timeout_ms=1000)
                    for record in batch.get(tp, ()):
                        key = record.key.decode() if record.key else ""
                        if record.value is None:
                            counts.pop(key, None)
                            continue
                        try:
                            value = json.loads(record.value)
                            counts[key] = (int(value["n"]), [str(m) for m in value["m"]])
                        except (ValueError, KeyError, TypeError):
                            logger.warning("ignoring unreadable attempts record %r", record.value)
            finally:
                await consumer.stop()
        self.counts = counts

    async def add(
        self,
        starts: Sequence[Start],
        committed: Callable[[int], Awaitable[int | None]],
    ) -> int:
        """Add starts (once per marker) for entries at or after the committed offset."""
        broker = self._broker
        producer = await broker.producer()
        futures = []
        added = 0
        async with broker.errors(f"record attempts in {self.topic}"):
            for key, count, marker in starts:
                place = split_entry(key)
                if place is not None:
                    done = await committed(place[0])
                    if done is not None and place[1] < done:
                        continue  # handled and committed meanwhile
                n, markers = self.counts.get(key, (0, []))
                if marker and marker in markers:
                    continue
                n += count
                if marker:
                    markers = [*markers[-(MARKERS_KEPT - 1) :], marker]
                self.counts[key] = (n, markers)
                value = json.dumps({"n": n, "m": markers}).encode()
                futures.append(await producer.send(self.topic, value, key=key.encode()))
                added += count
            for future in futures:
                await future
        return added

    async def clear(self, entry_ids: Sequence[str]) -> None:
        """Drop the records of settled entries (a tombstone each)."""
        gone = [e for e in entry_ids if self.counts.pop(e, None) is not None]
        if not gone:
            return
        broker = self._broker
        producer = await broker.producer()
        async with broker.errors(f"clear attempts in {self.topic}"):
            futures = [await producer.send(self.topic, None, key=e.encode()) for e in gone]
            for future in futures:
                await future


__all__ = ["KafkaAttemptsRecord", "split_entry"]
