"""Redis: a published batch travels as one argument pair and a page is acked in one
script; bodies of any bytes arrive intact, and pages larger than a script's chunk settle."""

from __future__ import annotations

import uuid

import redis.asyncio as aioredis

from troupe.brokers import BYTES, connect
from troupe.brokers.redis import RedisBroker


def redis(url: str) -> RedisBroker:
    broker = connect(url)
    assert isinstance(broker, RedisBroker)
    return broker


async def test_a_batch_of_any_bytes_arrives_intact_and_in_order(redis_url: str) -> None:
    broker = redis(redis_url)
    stream = f"wire-{uuid.uuid4().hex[:8]}"
    await broker.ensure_group(stream, "g")
    bodies = [b"", b",", b"\n\n", "é,ü 1".encode(), bytes(range(256)), b"12,34", b"x" * 70_000]
    bodies += [f"{i}".encode() * i for i in range(40)]
    messages = [broker.message(body, serializer=BYTES) for body in bodies]
    ids = await broker.publish_once(
        stream, messages, producer="p", sequence=1, window=60.0
    )
    assert len(ids) == len(bodies) and all(ids)
    again = await broker.publish_once(stream, messages, producer="p", sequence=1, window=60.0)
    assert again == ids  # a retry of the same sequence stores nothing twice
    session = await broker.consume(stream, "g", "c", window=len(bodies))
    page = await session.fetch(len(bodies), 1.0)
    assert [d.message.body for d in page if d.message is not None] == bodies
    assert [d.message.id for d in page if d.message is not None] == [m.id for m in messages]
    await session.ack(page)
    await session.close()
    await broker.close()


async def test_a_page_larger_than_a_script_chunk_is_acked_whole(redis_url: str) -> None:
    broker = redis(redis_url)
    stream = f"ack-{uuid.uuid4().hex[:8]}"
    await broker.ensure_group(stream, "g")
    await broker.publish_messages(stream, [broker.message(i) for i in range(1_200)])
    session = await broker.consume(stream, "g", "c", window=1_200)
    page = await session.fetch(1_200, 1.0)
    assert len(page) == 1_200
    client = aioredis.Redis.from_url(redis_url)
    attempts = f"{stream}:attempts:g"
    await client.hset(attempts, mapping={d.entry_id: 1 for d in page[:700]})
    for delivery in page[:700]:
        delivery.attempts = 1  # recorded: its record goes with the ack
    await session.ack(page)
    assert await broker.pending(stream, "g") == 0
    assert await client.hlen(attempts) == 0
    await client.aclose()
    await session.close()
    await broker.close()
