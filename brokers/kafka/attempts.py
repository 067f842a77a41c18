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
scheduled. Its reader is a consumer of its own, opened while the member joins the
group (:meth:`KafkaAttemptsRecord.prepare`: the topic made, the client connected, the
topic's metadata known; the partition assigned to it and paused) and kept until the
session closes, so a read after an assignment costs one round trip when the record is
empty (the common case).

Starts are added under their journal marker, so a start folded twice
(a folder that died half-way) counts once; starts of entries below the group's
committed offset (already handled) are not added. Why a topic and not a local file:
a partition moves between hosts on a rebalance, and its starts must move with it.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import Awaitable, Callable, Sequence
from typing import TYPE_CHECKING

from aiokafka import AIOKafkaConsumer, TopicPartition

from ..attempts import Start

if TYPE_CHECKING:
    from .broker import KafkaBroker

logger = logging.getLogger(__name__)

MARKERS_KEPT = 16
RETRY_MS = 10  # the record reader's wait before it asks again for metadata (default 100)
READ_WAIT_MS = 20  # the longest a fetch of the reader waits on the idle topic (default 500)


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
        self._partition = TopicPartition(self.topic, 0)
        self._opening: asyncio.Future[AIOKafkaConsumer] | None = None  # the reader

    def get(self, entry_id: str) -> int:
        """Starts recorded for ``entry_id`` (0 when none)."""
        found = self.counts.get(entry_id)
        return found[0] if found is not None else 0

    def prepare(self) -> None:
        """Start opening the reader now (beside the group join); ``load`` waits for it."""
        if self._opening is None:
            self._opening = asyncio.ensure_future(self._open())

    async def _open(self) -> AIOKafkaConsumer:
        broker = self._broker
        await broker.ensure_topic(self.topic, compact=True)
        async with broker.errors(f"open attempts {self.topic}"):
            reader = broker.consumer(
                enable_auto_commit=False,
                auto_offset_reset="earliest",
                retry_backoff_ms=RETRY_MS,  # it knows no metadata of the topic yet
                fetch_max_wait_ms=READ_WAIT_MS,  # a fetch left polling holds back little
            )
            await reader.start()
            try:
                # assigned and paused: the client asks for this one topic's metadata (not the
                # whole cluster's) and fetches nothing until a read resumes it
                reader.assign([self._partition])
                reader.pause(self._partition)
                await reader.end_offsets([self._partition])
            except BaseException:
                await reader.stop()
                raise
        return reader

    async def load(self) -> None:
        """Read the record topic to its end (replacing what is in memory)."""
        opening = self._opening
        if opening is None:
            opening = self._opening = asyncio.ensure_future(self._open())
        try:
            reader = await opening
        except BaseException:
            if self._opening is opening:
                self._opening = None  # the next load tries again
            raise
        tp = self._partition
        counts: dict[str, tuple[int, list[str]]] = {}
        async with self._broker.errors(f"read attempts {self.topic}"):
            # the end first, while the partition is paused: a fetch in flight would hold it back
            end = (await reader.end_offsets([tp]))[tp]
            if end > 0:  # never written to: empty (compaction keeps the end offset)
                reader.resume(tp)
                try:
                    await reader.seek_to_beginning(tp)
                    while await reader.position(tp) < end:
                        batch = await reader.getmany(tp, timeout_ms=1000)
                        for record in batch.get(tp, ()):
                            _fold_record(counts, record.key, record.value)
                finally:
                    reader.pause(tp)  # no fetch keeps polling until the next read
        self.counts = counts

    async def close(self) -> None:
        """Stop the reader (the session ends)."""
        opening, self._opening = self._opening, None
        if opening is None:
            return
        if not opening.done():
            opening.cancel()  # _open stops a reader it started
        with contextlib.suppress(asyncio.CancelledError, Exception):
            reader = await opening  # (cancelled or failed: no reader to stop)
            await reader.stop()

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


def _fold_record(
    counts: dict[str, tuple[int, list[str]]], key: bytes | None, value: bytes | None
) -> None:
    """One record of the topic into ``counts``: a value sets the entry, a tombstone drops it."""
    entry = key.decode() if key else ""
    if value is None:
        counts.pop(entry, None)
        return
    try:
        data = json.loads(value)
        counts[entry] = (int(data["n"]), [str(m) for m in data["m"]])
    except (ValueError, KeyError, TypeError):
        logger.warning("ignoring unreadable attempts record %r", value)


__all__ = ["KafkaAttemptsRecord", "split_entry"]
