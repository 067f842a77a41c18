"""A batch of messages produced at once: one closed record batch per partition.

A producer bridge hands the broker a batch it already gathered (the message it
handles and those queued behind it), so nothing is gained by lingering in the
client for more: :func:`produce_batches` packs the records into aiokafka record
batches (``create_batch``), one per partition (more when one fills up), closes them
and submits them with ``send_batch``; closed batches are drained by the sender at
once, where ``send`` would wait ``linger`` for the batch to fill.

A keyed message goes where ``send`` puts it (aiokafka's default partitioner: murmur2 of
the key, as the Java client, so placement by key is unchanged); the messages of a batch
without a key share one partition chosen at random among the available ones (sticky
partitioning, the Java client's default since Kafka 2.4, KIP-480: one record batch
where a choice per record makes one per partition; over many batches they spread
evenly). Records of one partition keep the order of the call; the idempotent
producer's sequence numbers, retries and ``acks=all`` apply to these batches as to
any other. A large record (over half the batch size) is sent on its own with ``send``,
which refuses one over ``max_request_size`` with a clear error, as before.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Sequence
from typing import Any

from aiokafka import AIOKafkaProducer
from aiokafka.partitioner import DefaultPartitioner

from ..message import Message
from .wire import to_record

_PARTITIONER = DefaultPartitioner()


async def produce_batches(
    producer: AIOKafkaProducer, topic: str, messages: Sequence[Message], *, alone_above: int
) -> list[tuple[int, int]]:
    """Produce ``messages`` to ``topic`` as closed batches; (partition, offset) of each,
    in order. A record of more than ``alone_above`` bytes goes through ``send`` on its
    own. Raises what the producer raises (after every batch ended)."""
    await producer.partitions_for(topic)  # waits for the topic's metadata
    cluster = producer.client.cluster
    every = list(cluster.partitions_for_topic(topic))
    available = list(cluster.available_partitions_for_topic(topic))
    sticky = random.choice(available or every)  # this batch's partition for unkeyed records
    records = [to_record(message) for message in messages]
    by_partition: dict[int, list[int]] = {}
    for i, (key, _, _, _) in enumerate(records):
        partition = sticky if key is None else _PARTITIONER(key, every, available)
        by_partition.setdefault(partition, []).append(i)
    # per message: the future of its batch (or of its own send), its offset in that batch
    placed: dict[int, tuple[asyncio.Future[Any], int]] = {}
    for partition, indexes in by_partition.items():
        builder = producer.create_batch()
        members: list[int] = []
        for i in indexes:
            key, value, headers, timestamp = records[i]
            if len(value or b"") + len(key or b"") > alone_above:
                if members:  # the records before it go first: the partition keeps the order
                    await _submit(producer, builder, topic, partition, members, placed)
                    builder, members = producer.create_batch(), []
                placed[i] = (
                    await producer.send(
                        topic, value, key=key, headers=headers, timestamp_ms=timestamp,
                        partition=partition,
                    ),
                    0,
                )  # fmt: skip
                continue
            if builder.append(key=key, value=value, headers=headers, timestamp=timestamp) is None:
                # full: send it, start the next (an empty batch takes any record)
                await _submit(producer, builder, topic, partition, members, placed)
                builder, members = producer.create_batch(), []
                builder.append(key=key, value=value, headers=headers, timestamp=timestamp)
            members.append(i)
        if members:
            await _submit(producer, builder, topic, partition, members, placed)
    futures = {id(future): future for future, _ in placed.values()}
    results = await asyncio.gather(*futures.values(), return_exceptions=True)
    for result in results:
        if isinstance(result, BaseException):
            raise result
    reports = []
    for i in range(len(records)):
        future, relative = placed[i]
        meta = future.result()
        reports.append((meta.partition, meta.offset + relative))
    return reports


async def _submit(
    producer: AIOKafkaProducer,
    builder: Any,
    topic: str,
    partition: int,
    members: list[int],
    placed: dict[int, tuple[asyncio.Future[Any], int]],
) -> None:
    builder.close()  # closed: drained at once, never lingering, nothing else joins it
    future = await producer.send_batch(builder, topic, partition=partition)
    for relative, i in enumerate(members):
        placed[i] = (future, relative)


__all__ = ["produce_batches"]
