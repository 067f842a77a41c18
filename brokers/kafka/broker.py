"""Apache Kafka broker (aiokafka): topics, a producer with acks=all, consumer-group sessions.

>>> from troupe.brokers import connect
>>> connect("kafka://app:s3cret@127.0.0.1:9092?namespace=dev.", partitions=4)
<KafkaBroker kafka://app:***@127.0.0.1:9092?namespace=dev.>

- **URL**: ``kafka://host:port[,host:port...]``; a user and password in it become
  SASL credentials (``SASL_PLAINTEXT`` with ``PLAIN`` unless ``security_protocol`` /
  ``sasl_mechanism`` say otherwise); ``?namespace=<prefix>`` prefixes every topic and
  group name. TLS and SASL settings are aiokafka keyword options passed through
  (``security_protocol``, ``ssl_context``, ``sasl_mechanism``, ``sasl_plain_username``,
  ``sasl_plain_password``, ...); credentials are never logged nor shown in reprs.
- **Producing**: one idempotent producer per broker (``acks="all"``,
  ``enable_idempotence=True``), key-hash partitioning (a message's ``key``; no key:
  spread), ``compression`` (gzip, snappy, lz4, zstd). A batch (a producer bridge's)
  goes out at once as one closed record batch per partition
  (:mod:`troupe.brokers.kafka.produce`); a single message waits up to ``linger``
  seconds to share a request with concurrent publishes. aiokafka retries within
  ``request_timeout``; the producer bridge retries on
  top of that until its ``delivery_timeout``. :meth:`KafkaBroker.produce` reports
  (partition, offset) per message, and :meth:`KafkaBroker.report` gives the report of a
  message id a producer bridge's ask returned. A retry after aiokafka gave up (or after
  a fatal producer error, which restarts the producer) can store a batch twice, with
  the same message ids: consumers dedupe with the idempotency store. A produce cancelled
  by its caller (the bridge's ``delivery_timeout``) withdraws: the producer is dropped
  and every batch it still holds fails, so a publish reported failed is not stored
  later (a request already on the wire may be; Kafka cannot take it back). Topics are created
  on first use with ``partitions`` partitions and ``replication`` replicas (existing
  topics are kept).
- **Consuming**: :class:`~troupe.brokers.kafka.session.KafkaSession` (a consumer-group
  member; offsets committed only up to the highest contiguous handled offset).
  ``partition_window=1`` keeps each partition's order strict even through retries (at
  most one record of a partition out at a time; slower).
- **Dead letters** go to ``<topic>.dlq``; **attempts** are counted in the compacted
  topic ``<topic>.attempts.<group>`` (see :mod:`troupe.brokers.kafka.attempts`).
- **Not supported**: delayed delivery (Kafka has none: ``publish(delay=...)`` raises
  BrokerError); ``maxlen`` trims a partition with DeleteRecords once it holds twice
  ``maxlen`` records (retention settings are the usual way).
- ``pending(topic, group)`` and ``lag(topic, group)`` are both the group's lag: records
  after its committed offsets (Kafka keeps no list of delivered, unacked records).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import re
from collections import OrderedDict
from collections.abc import AsyncIterator, Sequence
from typing import Any, Literal
from urllib.parse import parse_qsl, unquote

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka import errors as kerr
from aiokafka.admin import AIOKafkaAdminClient, NewTopic, RecordsToDelete
from aiokafka.structs import OffsetAndMetadata

from troupe.backoff import Backoff
from troupe.errors import ConfigError, require_at_least

from ..base import (
    DEFAULT_RECONNECT,
    WITHDRAW,
    Broker,
    BrokerConnectionError,
    BrokerError,
    Capabilities,
)
from ..log_limit import limit_client_logs
from ..message import JSON, Message, Serializer
from ..options import check_client_options, check_hosts
from ..session import ConsumerSession
from ..tail import Tail
from .produce import produce_batches
from .wire import from_record, to_record

logger = logging.getLogger(__name__)

CONNECTION_ERRORS: tuple[type[BaseException], ...] = (
    kerr.KafkaConnectionError,
    kerr.KafkaTimeoutError,
    kerr.NodeNotReadyError,
    kerr.RequestTimedOutError,
    kerr.NotEnoughReplicasError,
    kerr.LeaderNotAvailableError,
    kerr.NotLeaderForPartitionError,
    kerr.CoordinatorNotAvailableError,
    kerr.NotCoordinatorError,
    OSError,
    TimeoutError,
)
REPORTS_KEPT = 100_000  # delivery reports kept for report()
COMPRESSIONS = (None, "gzip", "snappy", "lz4", "zstd")
_LEGAL_TOPIC = re.compile(r"[A-Za-z0-9._-]+")


def parse_url(url: str) -> tuple[str, dict[str, str], str | None, str | None]:
    """(bootstrap servers, query options, user, password) of a ``kafka://`` URL."""
    rest = url.split("://", 1)[1] if "://" in url else url
    netloc, _, tail = rest.partition("/")
    netloc, _, query = netloc.partition("?")
    if "?" in tail:
        query = tail.split("?", 1)[1]
    user = password = None
    if "@" in netloc:
        auth, netloc = netloc.rsplit("@", 1)
        name, _, secret = auth.partition(":")
        user, password = unquote(name) or None, unquote(secret) if secret else None
    if not netloc:
        raise ConfigError("broker url", "kafka:// needs at least one host:port")
    return netloc, dict(parse_qsl(query)), user, password


class KafkaBroker(Broker):
    """A :class:`Broker` on Apache Kafka (see the module docstring)."""

    capabilities = Capabilities(
        "kafka",
        ordering="key",
        delayed=False,
        durable=True,
        shared=True,
        offsets=True,
        requeue_on_close=True,
        raw_entries=False,
    )

    def __init__(
        self,
        url: str,
        *,
        namespace: str | None = None,
        partitions: int = 1,
        replication: int = 1,
        linger: float = 0.005,
        compression: str | None = None,
        max_batch_bytes: int = 1 << 20,
        request_timeout: float = 30.0,
        session_timeout: float = 10.0,
        commit_interval: float = 0.1,
        rebalance_drain: float = 5.0,
        join_timeout: float = 60.0,
        start: Literal["earliest", "latest"] = "earliest",
        partition_window: int | None = None,
        maxlen: int | None = None,
        serializer: Serializer = JSON,
        reconnect: Backoff = DEFAULT_RECONNECT,
        journal_dir: str | os.PathLike[str] | None = None,
        **client_options: Any,
    ) -> None:
        super().__init__(url, serializer=serializer, reconnect=reconnect, journal_dir=journal_dir)
        bootstrap, query, user, password = parse_url(url)
        check_hosts(bootstrap.split(","), url)
        limit_client_logs("aiokafka")  # its reconnect noise during an outage, thinned
        check_client_options(
            client_options,
            "aiokafka (its producer, consumer and admin client all take them)",
            AIOKafkaProducer.__init__,
            AIOKafkaConsumer.__init__,
            AIOKafkaAdminClient.__init__,
            reserved=("bootstrap_servers", "request_timeout_ms"),
        )
        self.bootstrap = bootstrap
        self.namespace = namespace if namespace is not None else query.get("namespace", "")
        require_at_least("partitions", partitions, 1)
        require_at_least("replication", replication, 1)
        if compression not in COMPRESSIONS:
            raise ConfigError("compression", f"must be one of {COMPRESSIONS}, got {compression!r}")
        if start not in ("earliest", "latest"):
            raise ConfigError("start", f"must be 'earliest' or 'latest', got {start!r}")
        for setting, value in (
            ("linger", linger),
            ("commit_interval", commit_interval),
            ("rebalance_drain", rebalance_drain),
        ):
            if not isinstance(value, int | float) or value < 0:
                raise ConfigError(setting, f"must be a number of seconds >= 0, got {value!r}")
        for setting, value in (
            ("request_timeout", request_timeout),
            ("session_timeout", session_timeout),
            ("join_timeout", join_timeout),
        ):
            if not isinstance(value, int | float) or value <= 0:
                raise ConfigError(setting, f"must be a positive number of seconds, got {value!r}")
        if maxlen is not None:
            require_at_least("maxlen", maxlen, 1)
        if partition_window is not None:
            require_at_least("partition_window", partition_window, 1)
        self.partition_window = partition_window
        self.partitions = partitions
        self.replication = replication
        self.linger = float(linger)
        self.compression = compression
        self.max_batch_bytes = max_batch_bytes
        self.request_timeout = float(request_timeout)
        self.session_timeout = float(session_timeout)
        self.commit_interval = float(commit_interval)
        self.rebalance_drain = float(rebalance_drain)
        self.join_timeout = float(join_timeout)
        self.start = start
        self.maxlen = maxlen
        options: dict[str, Any] = {"bootstrap_servers": bootstrap.split(",")}
        if user is not None:
            options["sasl_plain_username"] = user
            options["sasl_plain_password"] = password
            options["security_protocol"] = "SASL_PLAINTEXT"
            options["sasl_mechanism"] = "PLAIN"
        options.update(client_options)
        self._client_options = options  # credentials inside: never logged
        self._producer: AIOKafkaProducer | None = None
        self._admin: AIOKafkaAdminClient | None = None
        self._topics: set[str] = set()
        self._lock = asyncio.Lock()
        self._trimmed: dict[TopicPartition, int] = {}
        self._reports: OrderedDict[str, tuple[int, int]] = OrderedDict()
        self._closing: set[asyncio.Future[None]] = set()  # withdrawn producers closing

    # -- names and clients ----------------------------------------------------------------

    def topic(self, stream: str) -> str:
        """The Kafka topic of ``stream`` (the namespace prefixed)."""
        return self.namespace + stream

    def group_id(self, group: str) -> str:
        """The Kafka group id of ``group`` (the namespace prefixed)."""
        return self.namespace + group

    def dlq(self, stream: str) -> str:
        return f"{stream}.dlq"

    def attempts_topic(self, stream: str, group: str) -> str:
        """The compacted topic that holds the attempts record of (``stream``, ``group``)."""
        safe = group if _LEGAL_TOPIC.fullmatch(group) else re.sub(r"[^A-Za-z0-9._-]", "_", group)
        return f"{stream}.attempts.{safe}"

    def client_options(self) -> dict[str, Any]:
        """Keyword options for an aiokafka client (bootstrap, TLS, SASL); holds secrets."""
        return dict(self._client_options)

    @contextlib.asynccontextmanager
    async def errors(self, what: str) -> AsyncIterator[None]:
        """Turn aiokafka's errors into BrokerConnectionError / BrokerError naming ``what``."""
        try:
            yield
        except CONNECTION_ERRORS as exc:
            raise BrokerConnectionError(f"kafka {what} on {self.url} failed: {exc!r}") from exc
        except kerr.KafkaError as exc:
            raise BrokerError(f"kafka {what} on {self.url} failed: {exc!r}") from exc

    async def producer(self) -> AIOKafkaProducer:
        """The broker's producer (started on first use)."""
        if self._producer is None:
            async with self._lock:
                if self._producer is None:
                    producer = AIOKafkaProducer(
                        acks="all",
                        enable_idempotence=True,
                        linger_ms=int(self.linger * 1000),
                        compression_type=self.compression,
                        max_batch_size=min(self.max_batch_bytes, 1 << 20),
                        max_request_size=max(self.max_batch_bytes, 1 << 20),
                        request_timeout_ms=int(self.request_timeout * 1000),
                        **self._client_options,
                    )
                    async with self.errors("producer start"):
                        try:
                            await producer.start()
                        except BaseException:
                            await producer.stop()
                            raise
                    self._producer = producer
        return self._producer

    async def _drop_producer(self, producer: AIOKafkaProducer) -> None:
        current: Any = self._producer
        if current is producer:
            self._producer = None
            logger.info("kafka producer on %s restarts after a fatal error", self.url)
            with contextlib.suppress(Exception):
                await current.stop()

    async def _withdraw(self, producer: AIOKafkaProducer) -> None:
        """Stop ``producer`` without sending what it still holds: its batches fail.

        aiokafka's idempotent producer retries a batch until it is stored and has no
        way to take one back, so the producer is dropped: its sender task is cancelled
        and every batch it holds fails (the next produce starts a new producer). A
        request already on the wire when this runs may still be stored by the broker.
        Other callers' unconfirmed sends on this producer fail too (they retry).
        """
        if self._producer is producer:
            self._producer = None
        withdrawn = BrokerConnectionError(f"kafka produce on {self.url} withdrawn (timed out)")
        sender: Any = getattr(producer, "_sender", None)
        accumulator: Any = getattr(producer, "_message_accumulator", None)
        task = getattr(sender, "sender_task", None)
        if task is not None and not task.done():
            task.cancel()
        if accumulator is not None:
            accumulator.fail_all(withdrawn)  # nothing left for a sender to take
        logger.info("kafka producer on %s withdrew its unconfirmed batches", self.url)
        closing = asyncio.ensure_future(self._close_withdrawn(producer, task, accumulator))
        self._closing.add(closing)
        closing.add_done_callback(self._closing.discard)

    async def _close_withdrawn(self, producer: Any, task: Any, accumulator: Any) -> None:
        if task is not None:
            with contextlib.suppress(BaseException):
                await asyncio.wait({task}, timeout=self.request_timeout)
        if accumulator is not None:  # batches re-enqueued by requests that ended meanwhile
            accumulator.fail_all(BrokerConnectionError(f"kafka produce on {self.url} withdrawn"))
        producer._closed = True
        with contextlib.suppress(Exception):
            await producer.client.close()

    async def admin(self) -> AIOKafkaAdminClient:
        """The broker's admin client (started on first use)."""
        if self._admin is None:
            async with self._lock:
                if self._admin is None:
                    admin = AIOKafkaAdminClient(
                        request_timeout_ms=int(self.request_timeout * 1000),
                        **self._client_options,
                    )
                    async with self.errors("admin start"):
                        try:
                            await admin.start()
                        except BaseException:
                            await admin.close()
                            raise
                    self._admin = admin
        return self._admin

    def consumer(self, **options: Any) -> AIOKafkaConsumer:
        """A new aiokafka consumer with this broker's connection options."""
        return AIOKafkaConsumer(
            request_timeout_ms=int(self.request_timeout * 1000), **self._client_options, **options
        )

    async def connect(self) -> None:
        await self.producer()

    async def close(self) -> None:
        producer, self._producer = self._producer, None
        admin, self._admin = self._admin, None
        if producer is not None:
            with contextlib.suppress(kerr.KafkaError, *CONNECTION_ERRORS):
                await producer.stop()
        if admin is not None:
            with contextlib.suppress(kerr.KafkaError, *CONNECTION_ERRORS):
                await admin.close()
        if self._closing:
            await asyncio.wait(set(self._closing))
        self._topics.clear()

    async def ensure_topic(self, topic: str, *, compact: bool = False) -> bool:
        """Create the Kafka topic ``topic`` (already prefixed) unless it exists; True when
        this call created it (it is empty)."""
        if topic in self._topics:
            return False
        admin = await self.admin()
        configs = {"cleanup.policy": "compact"} if compact else {}
        partitions = 1 if compact else self.partitions
        async with self.errors(f"create topic {topic}"):
            try:
                response = await admin.create_topics(
                    [NewTopic(topic, partitions, self.replication, topic_configs=configs)]
                )
                for _name, code, *_ in response.topic_errors:
                    if code:
                        raise kerr.for_code(code)()
            except kerr.TopicAlreadyExistsError:
                self._topics.add(topic)
                return False
        self._topics.add(topic)
        return True

    # -- producing ------------------------------------------------------------------------

    async def produce(self, stream: str, messages: Sequence[Message]) -> list[tuple[int, int]]:
        """Produce ``messages`` to ``stream``'s topic; (partition, offset) of each, in order."""
        topic = self.topic(stream)
        await self.ensure_topic(topic)
        producer = await self.producer()
        async with self.errors(f"produce to {topic}"):
            try:
                if len(messages) > 1:
                    reports = await produce_batches(
                        producer, topic, messages, alone_above=self.max_batch_bytes // 2
                    )
                else:  # one message: it lingers to share a request with concurrent sends
                    key, value, headers, timestamp = to_record(messages[0])
                    sent = await producer.send(
                        topic, value, key=key, headers=headers, timestamp_ms=timestamp
                    )
                    result = await sent
                    reports = [(result.partition, result.offset)]
            except asyncio.CancelledError as cancelled:
                if cancelled.args and cancelled.args[0] == WITHDRAW:
                    # the producer bridge gave up at its delivery_timeout and reports the
                    # failure: batches still in the producer must not be stored later
                    await self._withdraw(producer)
                raise  # any other cancellation: the producer finishes what it holds
            except kerr.KafkaError as exc:
                if not isinstance(exc, CONNECTION_ERRORS):
                    # e.g. OutOfOrderSequenceNumber after a broker restart: the idempotent
                    # producer's state is gone; the retry gets a new producer id
                    await self._drop_producer(producer)
                raise
        kept = self._reports
        for message, report in zip(messages, reports, strict=True):
            kept[message.id] = report
        while len(kept) > REPORTS_KEPT:
            kept.popitem(last=False)
        if self.maxlen is not None:
            await self._trim(topic, reports)
        return reports

    def report(self, message_id: str) -> tuple[int, int] | None:
        """The delivery report (partition, offset) of a message this broker produced
        (the id a producer bridge's ask returned); None once it is too old (100,000 kept)."""
        return self._reports.get(message_id)

    async def _append(self, stream: str, messages: Sequence[Message]) -> list[str]:
        return [f"{p}:{o}" for p, o in await self.produce(stream, messages)]

    async def _schedule(self, stream: str, messages: Sequence[Message], due: float) -> None:
        raise BrokerError(f"kafka has no delayed delivery (publish to {stream!r} with a delay)")

    async def promote_due(self, stream: str) -> int:
        return 0

    async def _trim(self, topic: str, reports: Sequence[tuple[int, int]]) -> None:
        maxlen = self.maxlen
        assert maxlen is not None
        ends: dict[int, int] = {}
        for partition, offset in reports:
            ends[partition] = max(ends.get(partition, -1), offset + 1)
        cut: dict[TopicPartition, RecordsToDelete] = {}
        for partition, end in ends.items():
            tp = TopicPartition(topic, partition)
            if end - self._trimmed.get(tp, 0) > 2 * maxlen:
                cut[tp] = RecordsToDelete(end - maxlen)
        if cut:
            admin = await self.admin()
            async with self.errors(f"trim {topic}"):
                done = await admin.delete_records(cut)
            self._trimmed.update(done)

    # -- consuming ------------------------------------------------------------------------

    async def ensure_group(self, stream: str, group: str) -> None:
        """Create the topic and the group's attempts record (a compacted topic); a new
        group starting at ``latest`` is fixed at today's end."""
        topic = self.topic(stream)
        await self.ensure_topic(topic)
        await self.ensure_topic(self.topic(self.attempts_topic(stream, group)), compact=True)
        if self.start == "latest":
            await self._pin_new_group(topic, self.group_id(group))

    async def _pin_new_group(self, topic: str, group_id: str) -> None:
        """Commit the end offsets for partitions the group has no offset for (if it is empty)."""
        admin = await self.admin()
        async with self.errors(f"pin group {group_id}"):
            committed = await admin.list_consumer_group_offsets(group_id)
            tps = await self._partitions(topic)
            missing = [tp for tp in tps if tp not in committed]
            if not missing:
                return
            consumer = self.consumer(group_id=group_id, enable_auto_commit=False)
            await consumer.start()
            try:
                ends = await consumer.end_offsets(missing)
                consumer.assign(missing)
                with contextlib.suppress(kerr.KafkaError):  # the group has members: theirs
                    await consumer.commit({tp: OffsetAndMetadata(o, "") for tp, o in ends.items()})
            finally:
                await consumer.stop()

    async def _partitions(self, topic: str) -> list[TopicPartition]:
        admin = await self.admin()
        described = await admin.describe_topics([topic])
        out: list[TopicPartition] = []
        for info in described:
            if info.get("error_code"):
                continue
            out.extend(TopicPartition(topic, p["partition"]) for p in info["partitions"])
        return sorted(out)

    async def consume(
        self,
        stream: str,
        group: str,
        consumer: str,
        *,
        window: int,
        claim_idle: float = 30.0,
        delay_poll: float = 0.05,
    ) -> ConsumerSession:
        """Join ``group`` on ``stream``'s topic; returns once the group assigned partitions."""
        from .session import KafkaSession

        await self.ensure_group(stream, group)
        session = KafkaSession(self, stream, group, consumer, window)
        await session.start()
        return session

    async def broadcast(self, topic: str, messages: Sequence[Message]) -> None:
        from .tail import broadcast

        await broadcast(self, topic, messages)

    async def broadcast_queued(
        self, topic: str, messages: Sequence[Message]
    ) -> asyncio.Future[None]:
        from .tail import broadcast_queued

        return await broadcast_queued(self, topic, messages)

    async def tail(self, topic: str) -> Tail:
        from .tail import KafkaTail

        return await KafkaTail.open(self, topic)

    async def read_stream(self, stream: str, count: int = 1000) -> list[Message]:
        """The messages in ``stream``'s topic from the beginning (all partitions), up to
        ``count``, ordered by timestamp (unreadable records keep their fields in ``raw``)."""
        topic = self.topic(stream)
        await self.admin()
        async with self.errors(f"read {topic}"):
            tps = await self._partitions(topic)
            if not tps:
                return []
            consumer = self.consumer(enable_auto_commit=False, auto_offset_reset="earliest")
            await consumer.start()
            try:
                consumer.assign(tps)
                await consumer.seek_to_beginning(*tps)
                ends = await consumer.end_offsets(tps)
                out: list[tuple[float, int, int, Message]] = []
                left = {tp for tp in tps if ends[tp] > await consumer.position(tp)}
                while left and len(out) < count:
                    batch = await consumer.getmany(*left, timeout_ms=1000)
                    for tp, records in batch.items():
                        for r in records:
                            msg, error, raw = from_record(
                                topic, r.partition, r.offset, r.key, r.value, r.headers, r.timestamp
                            )
                            if msg is None:
                                msg = Message(b"", None, {"troupe-error": error or ""},
                                              f"{topic}:{r.partition}:{r.offset}",
                                              r.timestamp / 1000, raw)  # fmt: skip
                            out.append((msg.timestamp, tp.partition, r.offset, msg))
                        if await consumer.position(tp) >= ends[tp]:
                            left.discard(tp)
            finally:
                await consumer.stop()
        out.sort(key=lambda row: row[:3])
        return [row[3] for row in out[:count]]

    async def _group_lag(self, topic: str, group_id: str) -> int:
        admin = await self.admin()
        committed = await admin.list_consumer_group_offsets(group_id)
        tps = await self._partitions(topic)
        if not tps:
            return 0
        consumer = self.consumer(enable_auto_commit=False)
        await consumer.start()
        try:
            ends = await consumer.end_offsets(tps)
            starts = await consumer.beginning_offsets(tps)
        finally:
            await consumer.stop()
        total = 0
        for tp in tps:
            done = committed.get(tp)
            base = done.offset if done is not None and done.offset >= 0 else None
            if base is None:
                base = starts[tp] if self.start == "earliest" else ends[tp]
            total += max(0, ends[tp] - max(base, starts[tp]))
        return total

    async def pending(self, stream: str, group: str) -> int:
        """Records after the group's committed offsets (its lag)."""
        async with self.errors("pending"):
            return await self._group_lag(self.topic(stream), self.group_id(group))

    async def lag(self, stream: str, group: str) -> int | None:
        async with self.errors("lag"):
            return await self._group_lag(self.topic(stream), self.group_id(group))

    async def seek_group(
        self,
        stream: str,
        group: str,
        *,
        offsets: dict[int, int] | None = None,
        timestamp: float | None = None,
    ) -> dict[int, int]:
        """Move an idle group's committed offsets: to ``offsets`` (partition -> offset) or
        to the first record at or after ``timestamp`` (a ``time.time()`` value; the end
        where none is). Fails with BrokerError while the group has members (seek through
        the consumer bridge then). Returns the offsets committed."""
        topic, group_id = self.topic(stream), self.group_id(group)
        await self.ensure_topic(topic)
        async with self.errors(f"seek group {group_id}"):
            tps = await self._partitions(topic)
            consumer = self.consumer(group_id=group_id, enable_auto_commit=False)
            await consumer.start()
            try:
                target = await resolve_seek(consumer, tps, offsets, timestamp)
                consumer.assign(list(target))
                await consumer.commit({tp: OffsetAndMetadata(o, "") for tp, o in target.items()})
            finally:
                await consumer.stop()
        return {tp.partition: o for tp, o in target.items()}


async def resolve_seek(
    consumer: AIOKafkaConsumer,
    tps: Sequence[TopicPartition],
    offsets: dict[int, int] | None,
    timestamp: float | None,
) -> dict[TopicPartition, int]:
    """The offset per partition a seek by offsets or by timestamp goes to."""
    if (offsets is None) == (timestamp is None):
        raise ConfigError("seek", "give exactly one of offsets= or timestamp=")
    if offsets is not None:
        known = {tp.partition: tp for tp in tps}
        unknown = sorted(set(offsets) - set(known))
        if unknown:
            raise ConfigError("seek", f"no such partitions: {unknown}")
        return {known[p]: o for p, o in offsets.items()}
    assert timestamp is not None
    found = await consumer.offsets_for_times({tp: int(timestamp * 1000) for tp in tps})
    ends = await consumer.end_offsets(list(tps))
    return {tp: (found[tp].offset if found.get(tp) is not None else ends[tp]) for tp in tps}


__all__ = ["KafkaBroker", "parse_url", "resolve_seek"]
