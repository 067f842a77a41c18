"""troupe's own operations on dramatiq's Redis layout: fetch with ids, dead-letter what does
not decode, a time-ordered schedule, heartbeats and the recovery of dead workers' tasks.

The keys are dramatiq's (``NS:QUEUE`` list, ``NS:QUEUE.msgs`` hash, ``NS:__acks__.WORKER.QUEUE``
unacked sets, ``NS:QUEUE.XQ`` dead letters), so stock dramatiq producers and workers share
the queues; troupe adds keys under ``NS:__troupe_*``, which dramatiq never reads:

- ``__troupe_beats__``: a sorted set of troupe workers (a broker's ``broker_id``) by their
  last heartbeat, in the Redis server's clock; ``__troupe_queues__.WORKER``: the queues a
  worker fetches from. :meth:`RedisQueues.recover` puts the unacked tasks of a worker that
  has not beaten for ``timeout`` seconds back at the head of their queues. Stock dramatiq
  workers are not in the set: dramatiq's own maintenance (60 s) keeps handling them.
- ``__troupe_sched__.QUEUE``: scheduled tasks and retries by eta (Asynq's scheduled set).
  The delay fetcher moves what arrives on dramatiq's ``QUEUE.DQ`` list there (the message
  stays in ``QUEUE.DQ.msgs``) and moves what is due onto ``QUEUE``, earliest first, so a
  near-due task never waits behind far-future ones.
- ``__troupe_reasons__.QUEUE``: why a message was dead-lettered without running (it did
  not decode); its bytes are in dramatiq's ``QUEUE.XQ.msgs``, as they came.

Every script is atomic; moves are guarded (``SREM``/``ZREM`` first), so two pools racing,
or a worker declared dead while only slow, cause at most a second run (at least once),
never a lost task.
"""

from __future__ import annotations

import logging
from typing import Any

logger = logging.getLogger(__name__)

_PRELUDE = """
local ns = KEYS[1]
local function canonical(q)
  if string.sub(q, -3) == ".DQ" then return string.sub(q, 1, -4) end
  return q
end
local function now_ms()
  local t = redis.call("time")
  return tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end
"""

# ARGV: queue, worker, count -> {id, data, id, data, ...}; each id joins the worker's acks
_TAKE = """
local queue, worker, count = ARGV[1], ARGV[2], tonumber(ARGV[3])
redis.call("zadd", ns .. ":__heartbeats__", now_ms(), worker)
local list = ns .. ":" .. queue
local msgs = list .. ".msgs"
local acks = ns .. ":__acks__." .. worker .. "." .. queue
local out = {}
for _ = 1, count do
  local id = redis.call("lpop", list)
  if not id then break end
  local data = redis.call("hget", msgs, id)
  if data then
    redis.call("sadd", acks, id)
    out[#out + 1] = id
    out[#out + 1] = data
  end
end
return out
"""

# ARGV: queue, worker, id, reason, ttl_ms -> 1 when dead-lettered (its bytes as stored)
_BURY = """
local queue, worker, id, reason, ttl = ARGV[1], ARGV[2], ARGV[3], ARGV[4], ARGV[5]
local base = canonical(queue)
local msgs = ns .. ":" .. queue .. ".msgs"
redis.call("srem", ns .. ":__acks__." .. worker .. "." .. queue, id)
redis.call("zrem", ns .. ":__troupe_sched__." .. base, id)
local data = redis.call("hget", msgs, id)
if not data then return 0 end
local xq = ns .. ":" .. base .. ".XQ"
redis.call("zadd", xq, now_ms(), id)
redis.call("hset", xq .. ".msgs", id, data)
redis.call("hdel", msgs, id)
local reasons = ns .. ":__troupe_reasons__." .. base
redis.call("hset", reasons, id, reason)
redis.call("pexpire", reasons, ttl)
return 1
"""

# ARGV: queue (canonical), worker, id, eta_ms, id, eta_ms, ... -> how many were scheduled
_SCHEDULE = """
local queue, worker = ARGV[1], ARGV[2]
local acks = ns .. ":__acks__." .. worker .. "." .. queue .. ".DQ"
local sched = ns .. ":__troupe_sched__." .. queue
local n = 0
for i = 3, #ARGV, 2 do
  if redis.call("srem", acks, ARGV[i]) == 1 then
    redis.call("zadd", sched, ARGV[i + 1], ARGV[i])
    n = n + 1
  end
end
return n
"""

# ARGV: queue (canonical), now_ms, limit -> {id, data, ...} due by now, earliest first
_DUE = """
local queue, now, limit = ARGV[1], ARGV[2], tonumber(ARGV[3])
local sched = ns .. ":__troupe_sched__." .. queue
local msgs = ns .. ":" .. queue .. ".DQ.msgs"
local ids = redis.call("zrangebyscore", sched, "-inf", now, "LIMIT", 0, limit)
local out = {}
for _, id in ipairs(ids) do
  local data = redis.call("hget", msgs, id)
  if data then
    out[#out + 1] = id
    out[#out + 1] = data
  else
    redis.call("zrem", sched, id)
  end
end
return out
"""

# ARGV: queue (canonical), id, new_id, new_data, ... -> how many moved onto the queue
_PROMOTE = """
local queue = ARGV[1]
local sched = ns .. ":__troupe_sched__." .. queue
local dq_msgs = ns .. ":" .. queue .. ".DQ.msgs"
local list = ns .. ":" .. queue
local n = 0
for i = 2, #ARGV, 3 do
  if redis.call("zrem", sched, ARGV[i]) == 1 then
    redis.call("hdel", dq_msgs, ARGV[i])
    redis.call("hset", list .. ".msgs", ARGV[i + 1], ARGV[i + 2])
    redis.call("rpush", list, ARGV[i + 1])
    n = n + 1
  end
end
return n
"""

# ARGV: worker, queue, queue, ... -> the server's time (ms)
_BEAT = """
local worker = ARGV[1]
local now = now_ms()
redis.call("zadd", ns .. ":__troupe_beats__", now, worker)
redis.call("zadd", ns .. ":__heartbeats__", now, worker)
for i = 2, #ARGV do
  redis.call("sadd", ns .. ":__troupe_queues__." .. worker, ARGV[i])
end
return now
"""

# ARGV: timeout_ms -> {tasks requeued, workers found dead}
_RECOVER = """
local timeout = tonumber(ARGV[1])
local beats = ns .. ":__troupe_beats__"
local dead = redis.call("zrangebyscore", beats, "-inf", now_ms() - timeout)
local moved = 0
for _, worker in ipairs(dead) do
  local queues_key = ns .. ":__troupe_queues__." .. worker
  for _, queue in ipairs(redis.call("smembers", queues_key)) do
    local acks = ns .. ":__acks__." .. worker .. "." .. queue
    local list = ns .. ":" .. queue
    for _, id in ipairs(redis.call("smembers", acks)) do
      if redis.call("hexists", list .. ".msgs", id) == 1 then
        redis.call("lpush", list, id)
        moved = moved + 1
      end
    end
    redis.call("del", acks)
  end
  redis.call("del", queues_key)
  redis.call("zrem", beats, worker)
  redis.call("zrem", ns .. ":__heartbeats__", worker)
end
return {moved, #dead}
"""

#: dramatiq's default: dead letters are kept for 7 days.
DEAD_TTL_MS = 7 * 86400 * 1000


class RedisQueues:
    """The scripts above, for one dramatiq ``RedisBroker`` (its client, namespace and
    ``broker_id``, which names this process's unacked sets as dramatiq's do)."""

    def __init__(self, broker: Any) -> None:
        self.broker = broker
        self.client = broker.client
        self.namespace: str = broker.namespace
        self.worker: str = broker.broker_id
        self.dead_ttl_ms = int(getattr(broker, "dead_message_ttl", DEAD_TTL_MS))
        register = self.client.register_script
        self._take = register(_PRELUDE + _TAKE)
        self._bury = register(_PRELUDE + _BURY)
        self._schedule = register(_PRELUDE + _SCHEDULE)
        self._due = register(_PRELUDE + _DUE)
        self._promote = register(_PRELUDE + _PROMOTE)
        self._beat = register(_PRELUDE + _BEAT)
        self._recover = register(_PRELUDE + _RECOVER)

    def _run(self, script: Any, *args: Any) -> Any:
        return script(keys=[self.namespace], args=list(args))

    def take(self, queue: str, count: int) -> list[tuple[str, bytes]]:
        """Up to ``count`` (id, data) from ``queue``, now unacked by this worker."""
        flat = self._run(self._take, queue, self.worker, count)
        return [(flat[i].decode(), flat[i + 1]) for i in range(0, len(flat), 2)]

    def bury(self, queue: str, message_id: str, reason: str) -> bool:
        """Dead-letter message ``message_id`` of ``queue`` (or of its schedule) as it is
        stored, with ``reason``; False when it was gone already."""
        return bool(
            self._run(self._bury, queue, self.worker, message_id, reason, self.dead_ttl_ms)
        )

    def schedule(self, queue: str, etas: list[tuple[str, int]]) -> int:
        """Move messages this worker took from ``QUEUE.DQ`` into the schedule of ``queue``
        at their eta (epoch ms)."""
        if not etas:
            return 0
        flat = [x for message_id, eta in etas for x in (message_id, eta)]
        return int(self._run(self._schedule, queue, self.worker, *flat))

    def due(self, queue: str, now_ms: int, limit: int) -> list[tuple[str, bytes]]:
        """Up to ``limit`` scheduled (id, data) of ``queue`` due by ``now_ms``, earliest first."""
        flat = self._run(self._due, queue, now_ms, limit)
        return [(flat[i].decode(), flat[i + 1]) for i in range(0, len(flat), 2)]

    def promote(self, queue: str, moves: list[tuple[str, str, bytes]]) -> int:
        """Replace scheduled messages by ready copies on ``queue``: (scheduled id, new id,
        new data); a message another pool promoted first is skipped."""
        if not moves:
            return 0
        flat = [x for move in moves for x in move]
        return int(self._run(self._promote, queue, *flat))

    def next_eta(self, queue: str) -> int | None:
        """The earliest eta (epoch ms) in the schedule of ``queue``, if any."""
        key = f"{self.namespace}:__troupe_sched__.{queue}"
        first = self.client.zrange(key, 0, 0, withscores=True)
        return int(first[0][1]) if first else None

    def scheduled_count(self, queue: str) -> int:
        """How many messages the schedule of ``queue`` holds."""
        return int(self.client.zcard(f"{self.namespace}:__troupe_sched__.{queue}"))

    def beat(self, queues: list[str]) -> None:
        """This worker is alive and fetches from ``queues`` (names as on Redis)."""
        self._run(self._beat, self.worker, *queues)

    def recover(self, timeout: float) -> tuple[int, int]:
        """Requeue the unacked tasks of troupe workers silent for ``timeout`` seconds:
        (tasks requeued, workers found dead)."""
        moved, dead = self._run(self._recover, max(1, int(timeout * 1000)))
        return int(moved), int(dead)

    def reasons(self, queue: str) -> dict[str, str]:
        """Why messages of ``queue`` were dead-lettered without running, by Redis id."""
        raw = self.client.hgetall(f"{self.namespace}:__troupe_reasons__.{queue}")
        return {k.decode(): v.decode() for k, v in raw.items()}
