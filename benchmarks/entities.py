"""Sharded entities on Redis vs a raw consumer that folds events into a dict, and the memory
an active and a passivated entity cost.

Question 1, events per second (consume only: the events are in the streams before the
clock starts; each side consumes, folds and makes the state durable, then acks):

- troupe: ``Entities`` with ``SHARDS`` shard streams on one member (a fenced lease per
  shard, one ``ConsumerBridge`` and one ``EntityHost`` each, default ``batch``); the
  entity adds each event's amount to ``{"total": ..., "events": ...}``. Per batch it
  loads the state of keys not in memory (HMGET), applies the events, saves every changed
  key with the position of its last event in one fenced Lua script, then XACKs.
- raw: one redis-py client, the same JSON: ``XREADGROUP COUNT 500`` over the same number
  of shard streams, a plain dict ``key -> state`` (HMGET for keys it has not seen),
  ``json.loads`` per event, the same fold, then one ``HSET`` of the changed keys' records
  (the same ``position\\nstate`` format in a hash) and one XACK per stream page. It keeps
  every key in memory, checks no lease and skips no redelivery: the floor under
  what a durable per-key fold costs in Python on the same server.

Both sides run in the same process against the same redis-server, in interleaved
rounds (order rotating); the row reports median rates and the median of the paired
ratios (``_brokers_common.add_row``).

Question 2, memory (tracemalloc, Python allocations of this process): ``KEYS_MEMORY``
keys activated by one event each (bytes per active entity: after they are loaded, minus
before), then passivated (what is left per key once every entity left memory: its
state is in Redis only), and a Kafka changelog table record (``KafkaChangelogStore``
keeps the value bytes of every restored key of an owned partition; measured on the same
structure, without Kafka).

    python benchmarks/entities.py --quick --json benchmarks/results/entities.json
"""

from __future__ import annotations

import asyncio
import gc
import json
import sys
import time
import tracemalloc
from collections import defaultdict
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import redis.asyncio as aioredis
from _brokers_common import Stopwatch, Timing, add_row, rounds, wait_for
from _common import Report, parse_args

from troupe import ActorSystem
from troupe.actors.entities import Entities, Entity, shard_of
from troupe.brokers import connect
from troupe.brokers.servers import RedisServer

SHARDS = 4
KEYS = 1000
BATCH = 500
FILL = 500  # entries per XADD pipeline while filling (not timed)
PASSIVATE_AFTER = 15.0  # longer than activating every key of the memory row takes


class Tally(Entity):
    """The fold both sides do: add the amount, count the events."""

    def initial_state(self) -> dict[str, int]:
        return {"total": 0, "events": 0}

    def handle(self, message: dict[str, int]) -> None:
        state = self.state
        state["total"] += message["add"]
        state["events"] += 1


def events(n: int) -> list[tuple[str, dict[str, int]]]:
    return [(f"k{(i * 7919) % KEYS}", {"add": i % 13 + 1}) for i in range(n)]


# ----------------------------------------------------------------------------- troupe


async def troupe_side(url: str, n: int, kind: str) -> Timing:
    broker = connect(url)
    by_stream: dict[str, list[Any]] = defaultdict(list)
    for key, body in events(n):
        by_stream[f"{kind}.{shard_of(key, SHARDS)}"].append(broker.message(body, key=key))
    for stream, messages in by_stream.items():
        await broker.ensure_group(stream, kind)
        for first in range(0, len(messages), FILL):
            await broker.publish_messages(stream, messages[first : first + FILL])
    watch = Stopwatch()
    async with ActorSystem("bench", metrics=False) as system:
        tally = Entities(system, broker, Tally, kind=kind, shards=SHARDS, lease_ttl=5.0)
        stats = broker.stats
        acked = [stats.consumer(s, kind, s) for s in by_stream]
        watch.start()
        await tally.start()
        await wait_for(lambda: sum(a.acked for a in acked) >= n)  # acked = saved first
        timing = watch.stop()
        await tally.stop()
    await broker.close()
    return timing


# ----------------------------------------------------------------------------- raw redis-py


async def raw_side(url: str, n: int, kind: str) -> Timing:
    client = aioredis.Redis.from_url(url, protocol=2)
    streams = [f"{kind}.{shard}" for shard in range(SHARDS)]
    for stream in streams:
        await client.xgroup_create(stream, kind, id="0", mkstream=True)
    pending = events(n)
    for first in range(0, n, FILL):
        pipe = client.pipeline(transaction=False)
        for key, body in pending[first : first + FILL]:
            pipe.xadd(f"{kind}.{shard_of(key, SHARDS)}", {b"k": key, b"b": json.dumps(body)})
        await pipe.execute()
    table = f"raw:state:{kind}"
    states: dict[str, dict[str, int]] = {}
    watch = Stopwatch()
    watch.start()
    done = 0
    while done < n:
        reply: Any = await client.xreadgroup(
            kind, "c", dict.fromkeys(streams, ">"), count=BATCH, block=500
        )
        for stream, entries in reply or ():
            keys = [fields[b"k"].decode() for _id, fields in entries]
            unseen = [k for k in dict.fromkeys(keys) if k not in states]
            if unseen:
                for key, value in zip(unseen, await client.hmget(table, unseen), strict=True):
                    states[key] = (
                        json.loads(value.partition(b"\n")[2]) if value
                        else {"total": 0, "events": 0}
                    )
            changed: dict[str, str] = {}
            ids = []
            for (entry_id, fields), key in zip(entries, keys, strict=True):
                body = json.loads(fields[b"b"])
                state = states[key]
                state["total"] += body["add"]
                state["events"] += 1
                changed[key] = entry_id.decode()
                ids.append(entry_id)
            await client.hset(
                table,
                mapping={k: f"{pos}\n{json.dumps(states[k])}" for k, pos in changed.items()},
            )
            await client.xack(stream, kind, *ids)
            done += len(entries)
    timing = watch.stop()
    await client.aclose()
    return timing


# ----------------------------------------------------------------------------- memory


def traced() -> int:
    gc.collect()
    return tracemalloc.get_traced_memory()[0]


async def send_one_each(tally: Entities, keys: int) -> None:
    for first in range(0, keys, FILL):
        await asyncio.gather(
            *[tally.ref(f"m{i}").send({"add": 1}) for i in range(first, min(keys, first + FILL))]
        )


async def memory(url: str, keys: int) -> dict[str, float]:
    broker = connect(url)
    kind = f"mem{time.time_ns()}"
    async with ActorSystem("memory", metrics=False) as system:
        tally = Entities(
            system, broker, Tally, kind=kind, shards=SHARDS, lease_ttl=5.0,
            max_active=keys * 2, passivate_after=PASSIVATE_AFTER,
        )
        stats = tally.stats
        await tally.start()
        await send_one_each(tally, FILL)  # warm up: shards hosted, buffers grown
        await wait_for(lambda: sum(s.saved for s in stats.values()) >= FILL, poll=0.01)
        await wait_for(lambda: sum(s.active for s in stats.values()) == 0, poll=0.1)
        tracemalloc.start()
        before = traced()
        await send_one_each(tally, keys)  # activates ``keys`` entities, each saved
        await wait_for(lambda: sum(s.saved for s in stats.values()) >= FILL + keys, poll=0.01)
        active = traced()
        assert sum(s.active for s in stats.values()) == keys, "passivated too early"
        await wait_for(lambda: sum(s.active for s in stats.values()) == 0, poll=0.1)
        passivated = traced()
        tracemalloc.stop()
        await tally.stop()
    await broker.close()
    tracemalloc.start()
    empty = traced()
    table = {  # KafkaChangelogStore's table: key -> the record's value bytes
        f"m{i}": f"3:{1_000_000 + i}\n{json.dumps({'total': i, 'events': 2})}".encode()
        for i in range(keys)
    }
    record = (traced() - empty) / len(table)
    tracemalloc.stop()
    return {
        "active_entity_bytes": (active - before) / keys,
        "passivated_entity_bytes": (passivated - before) / keys,
        "kafka_changelog_record_bytes": record,
    }


ROWS = ("throughput", "memory")


def main() -> None:
    args = parse_args(__doc__.splitlines()[0], ROWS)
    n = 20_000 if args.quick else 100_000
    keys_memory = 10_000 if args.quick else 50_000
    repeat = args.repeat or 3
    report = Report("entities")
    with RedisServer() as server:
        if args.want("throughput"):
            sides = {"troupe": troupe_side, "raw_fold": raw_side}
            add_row(report, "entities_redis", n, rounds(repeat, n, server.url, sides),
                    keys=KEYS, shards=SHARDS)
        if args.want("memory"):
            import troupe

            figures = troupe.run(memory(server.url, keys_memory))
            for name, value in figures.items():
                report.add(name, "bytes", value, {}, keys=keys_memory)
    report.write(args.json)


if __name__ == "__main__":
    main()
