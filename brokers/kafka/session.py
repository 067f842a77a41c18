"""A member of a Kafka consumer group: the transport under ``ConsumerBridge``.

- **Assignment**: the group assigns partitions (aiokafka, classic protocol, eager
  rebalance); :meth:`KafkaSession.start` returns once the member has its first
  assignment (possibly empty: more members than partitions).
- **fetch** is ``getmany(max_records=limit)`` over the assigned partitions: records
  come in offset order per partition, so one target actor handles each partition's
  records in order (a retried record is handled after the later records of its
  partition that were already handed out; the commit still waits for it).
- **ack** marks records handled; the committed offset of a partition is the highest
  *contiguous* handled offset + 1, committed every ``commit_interval`` seconds and
  before a revoke or close — never a record that was not handled. ``dead_letter``
  produces to ``<topic>.dlq`` (``acks=all``) and then counts as handled.
- **Backpressure**: once ``window`` records are out unsettled, every assigned
  partition is paused (the fetcher stops asking the broker); they resume as records
  settle.
- **Order through retries** (``partition_window``, e.g. 1): at most that many records of
  one partition are out at once; records past it wait in the session (the partition is
  paused meanwhile) and are handed out as the partition's records settle, so a retried
  record holds its partition until it is handled or dead-lettered.
- **Rebalance**: on revoke, the member stops handing out the revoked partitions, waits
  up to ``rebalance_drain`` seconds for their handed-out records to settle, commits
  what is contiguous and forgets the rest (abandoned, uncommitted: the next owner
  delivers them again). A late ack of an abandoned record is ignored, unless the
  partition came back to this member and the record is out again (then it counts).
  The client fetches a new assignment while the assignment callback still runs (it
  reads the committed offsets and folds the attempts record): after a rebalance the new
  partitions stay paused until it ends, so no record is handed out before the listener
  knows its partition (a target refusing it would have it retried behind later
  records). The first assignment is not paused: ``start`` has not returned, so nothing
  is handed out yet, and the client fetches the first records meanwhile.
- **release** commits nothing beyond what was handled (the session is ending).
- **Attempts**: the journal of :mod:`troupe.brokers.attempts` over the record in
  :mod:`troupe.brokers.kafka.attempts`, reloaded and folded at every assignment, both
  under the host's fold lock: members of one host that are assigned partitions together
  read and fold one after the other, so whoever owns a partition reads the record after
  a dead member's starts were folded into it, whichever member folded them.
- **Stats**: lag (high watermark - next offset to hand out) and in-flight records per
  partition in ``broker.stats.consumer(...).partitions``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import deque
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from aiokafka import ConsumerRebalanceListener, TopicPartition
from aiokafka import errors as kerr

from troupe.errors import ConfigError

from ..attempts import JournaledAttempts, Start, journal_directory
from ..base import BrokerConnectionError, BrokerError, PartitionStats
from ..message import Message
from ..session import ConsumerSession, Delivery, OwnershipListener
from .attempts import KafkaAttemptsRecord
from .wire import from_record, to_record

if TYPE_CHECKING:
    from aiokafka.structs import ConsumerRecord

    from .broker import KafkaBroker

logger = logging.getLogger(__name__)

FIRST_FETCH = 2.0  # seconds the first fetch after an assignment waits for a known backlog
CLOSE_COMMIT = 5.0  # seconds the last commit of a closing member may take
ASK_TIMEOUT = 1.0  # seconds a lag or backlog question may take before it is skipped
HELD_POLL = 0.005  # seconds between looks for held-back records that came free


class _Partition:
    """What this member holds of one assigned partition."""

    __slots__ = ("committed", "handed", "held", "next", "open", "tp", "waiting")

    def __init__(self, tp: TopicPartition, committed: int | None) -> None:
        self.tp = tp
        self.committed = committed  # the group's committed offset (None: none yet)
        self.next = committed  # the next offset to hand out (None: unknown yet)
        self.handed: deque[int] = deque()  # offsets handed out, in order, not yet committed
        self.open: set[int] = set()  # handed out and not settled
        self.held = False  # paused: records wait for the partition_window
        self.waiting: deque[ConsumerRecord[bytes, bytes]] = deque()  # fetched, held back

    def contiguous(self) -> int | None:
        """The offset to commit: one past the highest contiguous settled offset."""
        handed, open_ = self.handed, self.open
        last = None
        while handed and handed[0] not in open_:
            last = handed.popleft()
        if last is None:
            return None
        return last + 1


class _Listener(ConsumerRebalanceListener):  # type: ignore[misc]
    def __init__(self, session: KafkaSession) -> None:
        self.session = session

    async def on_partitions_revoked(self, revoked: Any) -> None:
        await self.session._revoke(revoked)

    async def on_partitions_assigned(self, assigned: Any) -> None:
        await self.session._assign(assigned)


class KafkaSession(ConsumerSession):
    """One member of a Kafka consumer group (see the module docstring)."""

    def __init__(
        self, broker: KafkaBroker, stream: str, group: str, consumer: str, window: int
    ) -> None:
        super().__init__(stream, group, consumer, window)
        self._broker = broker
        self.topic = broker.topic(stream)
        self.group_id = broker.group_id(group)
        self.record = KafkaAttemptsRecord(broker, stream, group)
        directory = journal_directory(broker.journal_dir, "kafka", broker.url, self.topic, group)
        try:
            self.attempts = self._journal = JournaledAttempts(
                directory, consumer, self._add_attempts, window
            )
        except OSError as exc:
            raise ConfigError(
                "journal_dir", f"cannot keep attempt journals in {directory}: {exc}"
            ) from exc
        session_ms = int(broker.session_timeout * 1000)
        self._consumer = broker.consumer(
            group_id=self.group_id,
            client_id=consumer,
            enable_auto_commit=False,
            auto_offset_reset=broker.start,
            session_timeout_ms=session_ms,
            heartbeat_interval_ms=max(100, min(3000, session_ms // 3)),
        )
        self._parts: dict[int, _Partition] = {}
        self._joined = asyncio.Event()
        self._settled = asyncio.Event()
        self._rebalancing = False
        self._unsettled = 0
        self._paused = False
        self._fresh = False
        self._next_commit = 0.0
        self._commit_failing = False
        self._commit_lock = asyncio.Lock()
        self._commit_timer: asyncio.TimerHandle | None = None  # commits acks of idle partitions
        self._commits: set[asyncio.Task[None]] = set()
        self._closed = False
        self._ends: dict[TopicPartition, int] = {}  # end offsets asked for before a fetch
        self._fetching: set[str] | None = None  # acked while a fetch ran, not out yet
        self._listener: OwnershipListener | None = None
        self.stats = broker.stats.consumer(stream, group, consumer)

    # -- lifecycle ------------------------------------------------------------------------

    async def start(self) -> None:
        """Join the group; returns after the first assignment (raises BrokerConnectionError)."""
        broker = self._broker
        self.record.prepare()  # its reader opens while the member joins
        try:
            async with broker.errors(f"join group {self.group_id}"):
                await self._consumer.start()
                self._consumer.subscribe([self.topic], listener=_Listener(self))
                try:
                    async with asyncio.timeout(broker.join_timeout):
                        await self._joined.wait()
                except TimeoutError:
                    raise BrokerConnectionError(
                        f"kafka consumer {self.consumer} did not join group {self.group_id} "
                        f"on {broker.url} within {broker.join_timeout:g} s"
                    ) from None
        except BaseException:
            self._closed = True
            with contextlib.suppress(Exception):
                await self._consumer.stop()
            await self.record.close()
            self.attempts.close()
            raise

    async def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        if self._commit_timer is not None:
            self._commit_timer.cancel()
            self._commit_timer = None
        if self._commits:
            await asyncio.wait(set(self._commits), timeout=CLOSE_COMMIT)
        try:
            async with asyncio.timeout(CLOSE_COMMIT):  # a rebalance may hold a commit back
                await self._commit(force=True)
        except TimeoutError:
            logger.warning("consumer %s closed without its last commit", self.consumer)
        finally:
            with contextlib.suppress(Exception):
                await self._consumer.stop()  # leaves the group: a rebalance moves our partitions
            await self.record.close()
            self._parts.clear()
            self.stats.partitions = {}  # holds none now (metrics would show stale lag)

    # -- rebalance ------------------------------------------------------------------------

    async def _assign(self, assigned: Any) -> None:
        consumer = self._consumer
        mine = sorted(tp for tp in assigned if tp.topic == self.topic)
        # the client fetches the new partitions while this callback still runs (it awaits
        # offsets and the fold lock): after a rebalance, hold them paused until the
        # attempts record is folded and the listener knows them, so nothing is handed out
        # to a target that would refuse it, and a pause for a full window taken meanwhile
        # is not forgotten. The first assignment needs no pause (start() still waits: no
        # fetch hands anything out yet), so the client fetches the first records meanwhile.
        first = not self._joined.is_set()
        self._rebalancing = True
        if not first:
            if mine:
                consumer.pause(*mine)
            self._paused = True
        # the committed offsets asked for all at once (one round trip, not one per partition)
        asks = [consumer.committed(tp) for tp in mine]
        found = await asyncio.gather(*asks, return_exceptions=True)
        for tp, committed in zip(mine, found, strict=True):
            if isinstance(committed, BaseException):
                if not isinstance(committed, kerr.KafkaError):
                    raise committed
                committed = None
            self._parts[tp.partition] = _Partition(tp, committed)
        try:
            # under the host's fold lock: a member that folds a dead member's journal at
            # the same time has written its starts before we read (and we fold the rest
            # with fresh counts), so the owner of a partition never hands out a stale count
            async with self._journal.folding():
                await self.record.load()
                await self._journal.fold_dead(lock=False)
        except BrokerError as exc:
            logger.error(
                "consumer %s could not read the attempts record %s: %s",
                self.consumer,
                self.record.topic,
                exc,
            )
        self._rebalancing = False
        self._fresh = True
        self._update_stats()
        logger.debug(
            "consumer %s of group %s assigned %s", self.consumer, self.group_id, sorted(self._parts)
        )
        self._joined.set()
        if self._listener is not None:
            self._listener.assigned(sorted(tp.partition for tp in assigned))
        if self._paused and self._unsettled < self.window:
            self._resume()  # else resumed as records settle

    def listen(self, listener: OwnershipListener) -> bool:
        self._listener = listener
        listener.assigned(sorted(self._parts))
        return True

    async def _revoke(self, revoked: Any) -> None:
        self._rebalancing = True
        mine = [self._parts[tp.partition] for tp in revoked if tp.partition in self._parts]
        if not mine:
            return
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self._broker.rebalance_drain
        while any(part.open for part in mine) and not self._closed:
            left = deadline - loop.time()
            if left <= 0:
                break
            self._settled.clear()
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(min(left, 0.05)):
                    await self._settled.wait()
        await self._commit(force=True, parts=mine)
        if self._listener is not None:
            await self._listener.revoked(sorted(p.tp.partition for p in mine))
        abandoned = 0
        for part in mine:
            abandoned += len(part.open)
            self._unsettled -= len(part.open)
            del self._parts[part.tp.partition]
        if abandoned:
            logger.info(
                "consumer %s gave up %d unsettled records of revoked partitions %s (not committed;"
                " their next owner delivers them again)",
                self.consumer,
                abandoned,
                sorted(p.tp.partition for p in mine),
            )
        self._update_stats()

    # -- attempts -------------------------------------------------------------------------

    async def _add_attempts(self, starts: Sequence[Start], done: Sequence[str]) -> None:
        await self.record.add(starts, self._committed)

    async def _committed(self, partition: int) -> int | None:
        part = self._parts.get(partition)
        if part is not None:
            return part.committed
        async with self._broker.errors("committed offset"):
            found: int | None = await self._consumer.committed(
                TopicPartition(self.topic, partition)
            )
        return found

    # -- fetch ----------------------------------------------------------------------------

    async def fetch(self, limit: int, timeout: float) -> list[Delivery]:
        loop = asyncio.get_running_loop()
        if loop.time() >= self._next_commit:
            self._commit_behind()
        if self._paused and self._unsettled < self.window and not self._rebalancing:
            self._resume()
        out = self._take_held(limit)
        began = loop.time()
        deadline = began + (0.0 if out else timeout)
        while len(out) < limit:
            left = max(0.0, deadline - loop.time())
            # records held back for a partition_window come free as records settle
            step = min(left, HELD_POLL) if self._holding() else left
            await self._fetch_into(out, limit, step)
            if out:
                self._fresh = False
                break
            if loop.time() >= deadline:
                # the first fetch after an assignment came back empty: wait longer when the
                # partitions hold a backlog (asked only now: a fetch that brings records
                # first costs no round trip)
                if self._fresh:
                    self._fresh = False
                    if await self._backlog():
                        deadline = max(deadline, began + FIRST_FETCH)
                        continue
                break
            out = self._take_held(limit)
            if out:
                break
        self._unsettled += len(out)
        if self._unsettled >= self.window and not self._paused:
            self._pause()
        if out:
            self._update_stats()
        return out

    async def _fetch_into(self, out: list[Delivery], limit: int, wait: float) -> None:
        """One ``getmany``: records go to ``out`` or, past a partition's window, are held."""
        consumer = self._consumer
        meanwhile: set[str] = set()
        self._fetching = meanwhile
        try:
            async with self._broker.errors("fetch"):
                batch = await consumer.getmany(
                    timeout_ms=int(wait * 1000), max_records=limit - len(out)
                )
        finally:
            self._fetching = None
        cap = self._broker.partition_window
        for tp, records in batch.items():
            part = self._parts.get(tp.partition)
            if part is None or tp.topic != self.topic:
                continue  # revoked meanwhile: its next owner delivers it
            if cap is None and not meanwhile and records:
                self._hand_out(part, records, out)  # the common case, once per page
                continue
            for r in records:
                part.next = r.offset + 1
                if cap is not None and (part.waiting or len(part.open) >= cap):
                    part.waiting.append(r)  # handed out once the partition has room
                    if not part.held:
                        part.held = True
                        consumer.pause(tp)
                    continue
                delivery = self._delivery(r)
                part.handed.append(r.offset)
                if delivery.entry_id in meanwhile:
                    continue  # handled under its previous delivery, settled meanwhile
                out.append(delivery)
                part.open.add(r.offset)

    def _holding(self) -> bool:
        return any(part.waiting for part in self._parts.values())

    def _take_held(self, limit: int) -> list[Delivery]:
        """Held-back records of partitions that have room again, in offset order."""
        cap = self._broker.partition_window
        out: list[Delivery] = []
        if cap is None:
            return out
        for part in self._parts.values():
            while part.waiting and len(part.open) < cap and len(out) < limit:
                r = part.waiting.popleft()
                part.handed.append(r.offset)
                part.open.add(r.offset)
                out.append(self._delivery(r))
            if part.held and not part.waiting:
                part.held = False
                if not self._paused:
                    self._consumer.resume(part.tp)
        return out

    def _hand_out(
        self, part: _Partition, records: list[ConsumerRecord[bytes, bytes]], out: list[Delivery]
    ) -> None:
        """Hand out a partition's fetched records: ``_delivery`` per record, inlined."""
        topic, stream, group = self.topic, self.stream, self.group
        counts = self.record.counts
        handed, add, append = part.handed, part.open.add, out.append
        partition = part.tp.partition
        for r in records:
            offset = r.offset
            entry = f"{partition}:{offset}"
            message, error, raw = from_record(
                topic, partition, offset, r.key, r.value, r.headers, r.timestamp
            )
            found = counts.get(entry) if counts else None
            append(
                Delivery(
                    stream,
                    group,
                    entry,
                    message,
                    1,
                    found[0] if found is not None else 0,
                    error,
                    raw,
                    partition,
                    offset,
                )
            )
            handed.append(offset)
            add(offset)
        part.next = records[-1].offset + 1

    def _delivery(self, r: ConsumerRecord[bytes, bytes]) -> Delivery:
        entry = f"{r.partition}:{r.offset}"
        message, error, raw = from_record(
            self.topic, r.partition, r.offset, r.key, r.value, r.headers, r.timestamp
        )
        return Delivery(
            self.stream,
            self.group,
            entry,
            message,
            1,
            self.record.get(entry),
            error,
            raw,
            r.partition,
            r.offset,
        )

    async def _backlog(self) -> bool:
        """True when an assigned partition has records after this member's position."""
        consumer = self._consumer
        tps = [part.tp for part in self._parts.values()]
        if not tps:
            return False
        with contextlib.suppress(kerr.KafkaError, *_ERRORS):
            async with asyncio.timeout(ASK_TIMEOUT):  # a rebalance may hold positions back
                ends = await consumer.end_offsets(tps)
                for tp in tps:
                    if await consumer.position(tp) < ends[tp]:
                        return True
        return False

    def _pause(self) -> None:
        tps = [part.tp for part in self._parts.values()]
        if tps:
            self._consumer.pause(*tps)
        self._paused = True

    def _resume(self) -> None:
        tps = [part.tp for part in self._parts.values() if not part.held]
        if tps:
            self._consumer.resume(*tps)
        self._paused = False

    # -- settle ---------------------------------------------------------------------------

    def _settle(self, deliveries: Sequence[Delivery]) -> None:
        parts = self._parts
        settled = 0
        fetching = self._fetching
        for d in deliveries:
            part = parts.get(d.partition) if d.partition is not None else None
            offset = d.offset
            if part is not None and offset is not None and offset in part.open:
                part.open.discard(offset)
                settled += 1
            elif fetching is not None:  # out again by the fetch that runs: the bridge drops it
                fetching.add(d.entry_id)
        if settled:
            self._unsettled -= settled
            self._settled.set()
            if self._paused and self._unsettled < self.window and not self._rebalancing:
                self._resume()

    async def ack(self, deliveries: Sequence[Delivery]) -> None:
        self._settle(deliveries)
        if self.record.counts:  # else no delivery has a record to clear
            recorded = [d.entry_id for d in deliveries if d.recorded]
            if recorded:
                await self.record.clear(recorded)
        loop = asyncio.get_running_loop()
        if loop.time() >= self._next_commit:
            self._commit_behind()
        elif self._commit_timer is None and not self._closed:
            # a partition gone idle gets its last acks committed within commit_interval,
            # not only at the next fetch
            self._commit_timer = loop.call_at(self._next_commit, self._commit_due)

    def _commit_due(self) -> None:
        self._commit_timer = None
        self._commit_behind()

    def _commit_behind(self) -> None:
        """Commit in a task of its own: a commit's round trip (which waits behind the
        fetch on the coordinator's connection) holds back neither fetching nor acking."""
        if self._closed or self._commits:  # one is on its way: it commits what is due
            return
        task = asyncio.get_running_loop().create_task(self._commit())
        self._commits.add(task)
        task.add_done_callback(self._commit_done)

    def _commit_done(self, task: asyncio.Task[None]) -> None:
        self._commits.discard(task)
        if not task.cancelled() and (exc := task.exception()) is not None:
            logger.warning("consumer %s: a timed commit failed: %r", self.consumer, exc)

    async def dead_letter(self, delivery: Delivery, message: Message) -> None:
        part = self._parts.get(delivery.partition) if delivery.partition is not None else None
        if part is None or delivery.offset not in part.open:
            return  # no longer ours: the partition's next owner handles it
        broker = self._broker
        topic = broker.topic(broker.dlq(self.stream))
        await broker.ensure_topic(topic)
        producer = await broker.producer()
        key, value, headers, timestamp = to_record(message)
        async with broker.errors(f"dead-letter to {topic}"):
            future = await producer.send(
                topic, value, key=key, headers=headers, timestamp_ms=timestamp
            )
            await future
        await self.ack([delivery])

    async def renew(self, deliveries: Sequence[Delivery]) -> list[Delivery]:
        parts = self._parts
        kept = []
        for d in deliveries:
            part = parts.get(d.partition) if d.partition is not None else None
            if part is not None and d.offset in part.open:
                kept.append(d)
        return kept

    async def release(self, deliveries: Sequence[Delivery]) -> None:
        return None  # nothing is committed beyond the contiguous handled offset

    async def _commit(self, *, force: bool = False, parts: Sequence[_Partition] = ()) -> None:
        """Commit each partition's contiguous handled offset (skipped while rebalancing).

        The offsets are taken under the commit lock, so a commit never carries offsets
        read before another commit or a seek that ran meanwhile; an unforced commit
        while one is on its way is left to the next one."""
        if self._rebalancing and not force:
            return
        self._next_commit = asyncio.get_running_loop().time() + self._broker.commit_interval
        if self._commit_lock.locked() and not force:  # one is on its way: next time
            return
        async with self._commit_lock:
            offsets: dict[TopicPartition, int] = {}
            for part in parts or list(self._parts.values()):
                upto = part.contiguous()
                if upto is not None:
                    part.next = max(part.next or 0, upto)
                    offsets[part.tp] = upto
                elif (
                    part.handed and part.committed is not None and part.handed[0] > part.committed
                ):
                    offsets[part.tp] = part.handed[0]  # records skipped (compaction, markers)
            pending = {
                part.tp: part for part in parts or list(self._parts.values()) if part.tp in offsets
            }
            if not offsets:
                return
            try:
                await self._consumer.commit(offsets)
            except (kerr.KafkaError, *_ERRORS) as exc:
                self._requeue(offsets)
                if not self._commit_failing:
                    logger.warning(
                        "consumer %s could not commit offsets of %s (kept, retried): %r",
                        self.consumer,
                        self.topic,
                        exc,
                    )
                self._commit_failing = True
                return
        self._update_stats()
        if self._commit_failing:
            logger.info("consumer %s commits offsets again", self.consumer)
        self._commit_failing = False
        for tp, upto in offsets.items():
            part = pending[tp]
            part.committed = max(part.committed or 0, upto)

    def _requeue(self, offsets: dict[TopicPartition, int]) -> None:
        """Offsets that were not committed: keep them due (the handed deque was popped)."""
        for tp, upto in offsets.items():
            part = self._parts.get(tp.partition)
            if part is not None and (part.committed is None or upto > part.committed):
                part.handed.appendleft(upto - 1)  # settled: commits up to it next time

    # -- stats ----------------------------------------------------------------------------

    async def lag(self) -> int | None:
        parts = list(self._parts.values())
        unknown = [p.tp for p in parts if p.next is None or self._consumer.highwater(p.tp) is None]
        if unknown:  # nothing fetched yet: ask the broker
            with contextlib.suppress(kerr.KafkaError, *_ERRORS):
                async with asyncio.timeout(ASK_TIMEOUT):  # a rebalance may hold positions
                    ends = await self._consumer.end_offsets(unknown)
                    for part in parts:
                        if part.tp in ends:
                            position = await self._consumer.position(part.tp)
                            part.next = position if part.next is None else part.next
                            self._ends[part.tp] = ends[part.tp]
        self._update_stats()
        total = 0
        known = False
        for stats in self.stats.partitions.values():
            if stats.lag is not None:
                known = True
                total += stats.lag
        return total if known else None

    def _update_stats(self) -> None:
        consumer = self._consumer
        out: dict[int, PartitionStats] = {}
        for p, part in self._parts.items():
            high = consumer.highwater(part.tp)
            if high is None:
                high = self._ends.get(part.tp)
            lag = None
            if high is not None and part.next is not None:
                lag = max(0, high - part.next)
            out[p] = PartitionStats(lag=lag, in_flight=len(part.open), committed=part.committed)
        self.stats.partitions = out

    # -- seek -----------------------------------------------------------------------------

    async def seek(
        self, *, offsets: dict[int, int] | None = None, timestamp: float | None = None
    ) -> dict[int, int]:
        """Move this member's assigned partitions to ``offsets`` or to ``timestamp``.

        Records out at the time are abandoned (their acks no longer count), the new
        position is committed at once, and fetching goes on from there. Returns the
        offsets per partition moved (only partitions assigned to this member).
        """
        from .broker import resolve_seek

        consumer = self._consumer
        tps = [part.tp for part in self._parts.values()]
        # under the commit lock: a commit on its way lands before the seek's, never after
        async with self._commit_lock, self._broker.errors("seek"):
            target = await resolve_seek(consumer, tps, offsets, timestamp)
            for tp, offset in target.items():
                part = self._parts.get(tp.partition)
                if part is None:
                    continue
                self._unsettled -= len(part.open)
                fresh = _Partition(tp, part.committed)
                fresh.next = offset
                self._parts[tp.partition] = fresh
                consumer.seek(tp, offset)
                if part.held and not self._paused:
                    consumer.resume(tp)
            if target:
                await consumer.commit(dict(target))
            for tp, offset in target.items():
                if tp.partition in self._parts:
                    self._parts[tp.partition].committed = offset
        self._settled.set()
        if self._paused and self._unsettled < self.window:
            self._resume()
        self._update_stats()
        return {tp.partition: o for tp, o in target.items()}


_ERRORS: tuple[type[BaseException], ...] = (OSError, TimeoutError)

__all__ = ["KafkaSession"]
