"""A consumer of a Redis Streams consumer group: the transport under ``ConsumerBridge``.

``fetch`` takes, in this order and never more than asked (the target's
mailbox room): this consumer's own pending entries after a restart
(``XPENDING`` + ``XCLAIM``, page by page), then every ``claim_idle / 2``
seconds the entries of dead consumers idle longer than ``claim_idle``
(``XAUTOCLAIM``, after folding dead consumers' attempt journals), then new
entries (``XREADGROUP COUNT``). Reclaimed entries carry their recorded
attempts (``HMGET`` on ``<stream>:attempts:<group>``), their PEL delivery
count and how much of it the group's consumer *ends* explain (the sorted set
``<stream>:ends:<group>``: a dead journal folded, or a session closed holding
entries; see :func:`~troupe.brokers.attempts.account`); new ones have none of
these, so the hot path costs nothing extra.

``ack`` is one ``XACK`` (with ``HDEL`` of the attempts field in the same
MULTI/EXEC when the entry may have one); ``dead_letter`` is ``XADD`` to the
DLQ, ``XACK`` and ``HDEL`` in one MULTI/EXEC; ``renew`` is ``XCLAIM ... JUSTID``
(the PEL count is not raised); ``release`` leaves entries pending.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from redis import exceptions as rex

from troupe.errors import ConfigError

from ..attempts import ENDS_KEPT, JournaledAttempts, Start, account, journal_directory
from ..base import to_str
from ..message import MalformedMessage, Message, from_fields, to_fields, unpack
from ..session import ConsumerSession, Delivery

if TYPE_CHECKING:
    from .broker import RedisBroker

logger = logging.getLogger(__name__)

# Add handler starts to the attempts hash, only for entries still pending in the group,
# each at most once per marker (SET NX with a TTL): a start is counted once even if its
# consumer died between adding a failure and clearing the journal slot, or a folder died
# half-way. Markers of starts whose slot is gone are deleted first.
# KEYS: attempts hash, stream. ARGV: group, marker prefix, number of markers to delete,
# those markers, then (entry id, count, marker or '') triples.
_ADD_ATTEMPTS = """
local prefix = ARGV[2]
local done = tonumber(ARGV[3])
for i = 4, 3 + done do redis.call('DEL', prefix .. ARGV[i]) end
local added = 0
for i = 4 + done, #ARGV, 3 do
  local fresh = true
  if ARGV[i + 2] ~= '' then
    fresh = redis.call('SET', prefix .. ARGV[i + 2], '1', 'NX', 'EX', 3600)
  end
  if fresh then
    local p = redis.pcall('XPENDING', KEYS[2], ARGV[1], ARGV[i], ARGV[i], 1)
    if type(p) == 'table' and type(p[1]) == 'table' then
      redis.call('HINCRBY', KEYS[1], ARGV[i], tonumber(ARGV[i + 1]))
      added = added + 1
    end
  end
end
return added
"""

# Ack a page: XACK its entry ids and drop their attempt records in one script; each list of
# ids travels as one argument (the client encodes every argument on its own).
# KEYS: stream, attempts hash. ARGV: group, entry ids joined by ' ', recorded ids joined.
_ACK = """
local function in_chunks(joined, call)  -- at most 500 ids per command
  local ids, total = {}, 0
  for id in string.gmatch(joined, '%S+') do
    ids[#ids + 1] = id
    if #ids == 500 then
      total = total + call(ids)
      ids = {}
    end
  end
  if #ids > 0 then total = total + call(ids) end
  return total
end
local acked = in_chunks(ARGV[2], function(ids)
  return redis.call('XACK', KEYS[1], ARGV[1], unpack(ids))
end)
in_chunks(ARGV[3], function(ids) return redis.call('HDEL', KEYS[2], unpack(ids)) end)
return acked
"""


class RedisSession(ConsumerSession):
    """One consumer of a Redis consumer group (see the module docstring)."""

    def __init__(
        self,
        broker: RedisBroker,
        stream: str,
        group: str,
        consumer: str,
        window: int,
        claim_idle: float,
        delay_poll: float,
    ) -> None:
        super().__init__(stream, group, consumer, window)
        self._broker = broker
        self.claim_idle = claim_idle
        self.delay_poll = delay_poll
        self.attempts_key = f"{stream}:attempts:{group}"
        self.ends_key = f"{stream}:ends:{group}"
        self._holding: set[str] = set()  # fetched and not settled (an end raises their counts)
        directory = journal_directory(broker.journal_dir, "redis", broker.url, stream, group)
        try:
            self.attempts = self._journal = JournaledAttempts(
                directory, consumer, self._add_attempts, window, ended=self._ended
            )
        except OSError as exc:
            raise ConfigError(
                "journal_dir", f"cannot keep attempt journals in {directory}: {exc}"
            ) from exc
        self._own: str | None = "-"  # XPENDING cursor over our own pending (a restart)
        self._next_promote = 0.0
        self._next_claim = 0.0
        self._autoclaim = "0-0"

    async def _add_attempts(self, starts: Sequence[Start], done: Sequence[str]) -> None:
        args: list[Any] = [self.group, f"{self.attempts_key}:start:", len(done), *done]
        for key, count, marker in starts:
            args += [key, count, marker]
        async with self._broker._errors("record attempts"):
            await self._broker.script(_ADD_ATTEMPTS)(
                keys=[self.attempts_key, self.stream], args=args
            )

    async def _ended(self, incarnation: str) -> None:
        """A consumer session of the group ended holding entries (kept ``ENDS_KEPT`` s)."""
        now = time.time()
        async with self._broker._errors("record a consumer's end"):
            pipe = self._broker.client.pipeline(transaction=False)
            pipe.zadd(self.ends_key, {incarnation: now}, nx=True)
            pipe.zremrangebyscore(self.ends_key, "-inf", now - ENDS_KEPT)
            await pipe.execute()

    async def close(self) -> None:
        if self._holding:  # they stay pending: their next claim raises their counts
            self._holding.clear()
            await self._ended(self._journal.journal.incarnation)

    # -- fetch ----------------------------------------------------------------------------

    async def fetch(self, limit: int, timeout: float) -> list[Delivery]:
        out = await self._fetch(limit, timeout)
        self._holding.update(d.entry_id for d in out)
        return out

    async def _fetch(self, limit: int, timeout: float) -> list[Delivery]:
        if self._own is not None:
            own = await self._claim_own(limit)
            if own:
                return own
        now = time.monotonic()
        if now >= self._next_promote:
            self._next_promote = now + self.delay_poll
            await self._broker.promote_due(self.stream)
        if now >= self._next_claim:
            self._next_claim = now + max(self.claim_idle / 2, 0.01)
            await self.attempts.fold_dead()
            idle = await self._claim_idle(limit)
            if idle:
                return idle
        return await self._read_new(limit, timeout)

    async def _read_new(self, limit: int, timeout: float) -> list[Delivery]:
        client = self._broker.client
        block_ms = int(timeout * 1000)
        async with self._broker._errors("XREADGROUP"):
            try:
                reply: Any = await client.xreadgroup(
                    self.group,
                    self.consumer,
                    {self.stream: ">"},
                    count=limit,
                    block=block_ms or None,
                )
            except rex.ResponseError as exc:
                if "NOGROUP" not in str(exc):
                    raise
                logger.warning(
                    "group %s of stream %s vanished; recreating it", self.group, self.stream
                )
                await self._broker.ensure_group(self.stream, self.group)
                return []
        out: list[Delivery] = []
        append = out.append
        stream, group = self.stream, self.group
        for _name, entries in reply or ():
            for entry_id, fields in entries:
                packed = fields.get(b"m") if len(fields) == 1 else None
                if packed is None or type(entry_id) is not bytes:
                    append(_delivery(stream, group, entry_id, fields, 1, 0))
                    continue
                entry = entry_id.decode()  # a troupe message, as one field: the hot path
                try:
                    message = unpack(packed, entry)
                except MalformedMessage as exc:
                    append(Delivery(stream, group, entry, None, 1, 0, str(exc), fields))
                    continue
                append(Delivery(stream, group, entry, message))
        return out

    async def _claim_own(self, limit: int) -> list[Delivery]:
        client = self._broker.client
        cursor = self._own
        assert cursor is not None
        async with self._broker._errors("XPENDING/XCLAIM"):
            pending: Any = await client.xpending_range(
                self.stream,
                self.group,
                min=cursor if cursor == "-" else f"({cursor}",
                max="+",
                count=limit,
                consumername=self.consumer,
            )
            if not pending:
                self._own = None
                return []
            counts = {to_str(p["message_id"]): int(p["times_delivered"]) for p in pending}
            ids = list(counts)
            self._own = ids[-1] if len(ids) == limit else None
            deliveries = await self._claim(ids, counts)
        if not deliveries and self._own is not None:
            return await self._claim_own(limit)  # the whole page was trimmed away
        return deliveries

    async def _claim_idle(self, limit: int) -> list[Delivery]:
        client = self._broker.client
        async with self._broker._errors("XAUTOCLAIM"):
            reply: Any = await client.xautoclaim(
                self.stream,
                self.group,
                self.consumer,
                int(self.claim_idle * 1000),
                start_id=self._autoclaim,
                count=limit,
            )
            self._autoclaim = to_str(reply[0])
            entries = [(to_str(e), f) for e, f in reply[1] if f is not None]
            deleted = [to_str(e) for e in reply[2]] if len(reply) > 2 else []
            if not entries and not deleted:
                return []
            ids = [e for e, _ in entries]
            pipe = client.pipeline(transaction=False)
            if ids:
                pipe.xpending_range(
                    self.stream,
                    self.group,
                    min=ids[0],
                    max=ids[-1],
                    count=len(ids) * 4 + 100,
                    consumername=self.consumer,
                )
                pipe.hmget(self.attempts_key, ids)
                pipe.zrange(self.ends_key, 0, -1, withscores=True)
            if deleted:  # trimmed from the stream while pending: nothing left to deliver
                pipe.hdel(self.attempts_key, *deleted)
            replies: list[Any] = await pipe.execute()
        if not ids:
            return []
        pending, recorded, ends = replies[0], replies[1], replies[2]
        counts = {to_str(p["message_id"]): int(p["times_delivered"]) for p in pending}
        attempts = {i: int(r) for i, r in zip(ids, recorded, strict=True) if r is not None}
        stream, group = self.stream, self.group
        out = [
            _delivery(stream, group, e, f, counts.get(e, 2), attempts.get(e, 0)) for e, f in entries
        ]
        account(out, [float(score) for _, score in ends])
        return out

    async def _claim(self, ids: list[str], counts: Mapping[str, int]) -> list[Delivery]:
        """Claim ``ids`` for this consumer and read their recorded attempts, in one pipeline."""
        if not ids:
            return []
        pipe = self._broker.client.pipeline(transaction=False)
        pipe.xclaim(self.stream, self.group, self.consumer, 0, list[Any](ids))
        pipe.hmget(self.attempts_key, ids)
        pipe.zrange(self.ends_key, 0, -1, withscores=True)
        claimed, recorded, ends = await pipe.execute()
        attempts = {i: int(r) for i, r in zip(ids, recorded, strict=True) if r is not None}
        out: list[Delivery] = []
        stale: list[str] = []
        for entry_id, fields in claimed:
            entry = to_str(entry_id)
            if fields is None:
                stale.append(entry)
                continue
            count = counts.get(entry, 0) + 1
            out.append(
                _delivery(self.stream, self.group, entry, fields, count, attempts.get(entry, 0))
            )
        account(out, [float(score) for _, score in ends])
        if stale:  # deleted from the stream (trimmed): nothing left to deliver
            cleanup = self._broker.client.pipeline(transaction=True)
            cleanup.xack(self.stream, self.group, *stale)
            cleanup.hdel(self.attempts_key, *stale)
            await cleanup.execute()
        return out

    # -- settle ---------------------------------------------------------------------------

    async def ack(self, deliveries: Sequence[Delivery]) -> None:
        if not deliveries:
            return
        ids = [d.entry_id for d in deliveries]
        self._holding.difference_update(ids)
        recorded = [d.entry_id for d in deliveries if d.recorded]
        async with self._broker._errors("XACK"):
            await self._broker.script(_ACK)(
                keys=[self.stream, self.attempts_key],
                args=[self.group, " ".join(ids), " ".join(recorded)],
            )

    async def dead_letter(self, delivery: Delivery, message: Message) -> None:
        self._holding.discard(delivery.entry_id)
        async with self._broker._errors("dead-letter"):
            pipe = self._broker.client.pipeline(transaction=True)
            pipe.xadd(self._broker.dlq(self.stream), to_fields(message))  # type: ignore[arg-type]
            pipe.xack(self.stream, self.group, delivery.entry_id)
            pipe.hdel(self.attempts_key, delivery.entry_id)
            await pipe.execute()

    async def renew(self, deliveries: Sequence[Delivery]) -> list[Delivery]:
        if not deliveries:
            return []
        ids: list[Any] = [d.entry_id for d in deliveries]
        async with self._broker._errors("XCLAIM"):
            claimed: Any = await self._broker.client.xclaim(
                self.stream, self.group, self.consumer, 0, ids, justid=True
            )
        kept = {to_str(e) for e in claimed}
        self._holding.difference_update(d.entry_id for d in deliveries if d.entry_id not in kept)
        return [d for d in deliveries if d.entry_id in kept]

    async def release(self, deliveries: Sequence[Delivery]) -> None:
        return None  # they stay pending: resumed by this consumer name or taken over when idle

    async def lag(self) -> int | None:
        return await self._broker.lag(self.stream, self.group)


def _delivery(
    stream: str, group: str, entry_id: Any, fields: Any, count: int, attempts: int
) -> Delivery:
    entry = to_str(entry_id)
    try:
        message = from_fields(fields, entry)
    except MalformedMessage as exc:
        return Delivery(stream, group, entry, None, count, attempts, str(exc), fields)
    return Delivery(stream, group, entry, message, count, attempts)


__all__ = ["RedisSession"]
