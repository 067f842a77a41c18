"""Shared task state: unique locks, leases, cancelled task ids and paused queues.

A :class:`ControlStore` is what every client, worker pool and scheduler of
one deployment agrees through: :class:`RedisControl` (Redis keys under
``troupe:tasks:``) for several processes or nodes, :class:`MemoryControl`
for one process (the embedded default). :func:`control_for` picks one for a
broker: the Redis broker's own server, a StubBroker's process-wide store.

>>> store = MemoryControl()
>>> store.acquire("k", "me", 5.0), store.acquire("k", "you", 5.0)
(True, False)
>>> store.release("k", "me"), store.acquire("k", "you", 5.0)
(True, True)
"""

from __future__ import annotations

import json
import logging
import threading
import time
import weakref
from abc import ABC, abstractmethod
from typing import Any

import dramatiq

logger = logging.getLogger(__name__)

PREFIX = "troupe:tasks:"
#: How long a cancellation is remembered (a task enqueued later with the id is not hit).
CANCEL_TTL = 24 * 3600.0

_RELEASE = """
if redis.call('get', KEYS[1]) == ARGV[1] then return redis.call('del', KEYS[1]) end
return 0
"""
_RENEW = """
if redis.call('get', KEYS[1]) == ARGV[1] then
  return redis.call('pexpire', KEYS[1], ARGV[2])
end
return redis.call('set', KEYS[1], ARGV[1], 'NX', 'PX', ARGV[2]) and 1 or 0
"""


class ControlStore(ABC):
    """Locks with an owner and a time to live, cancellations, pauses, and what each
    worker pool runs (its reports). ``shared``: other processes see this store."""

    shared: bool = True

    @abstractmethod
    def acquire(self, key: str, owner: str, ttl: float) -> bool:
        """Take ``key`` for ``owner`` for ``ttl`` seconds unless someone holds it."""

    @abstractmethod
    def renew(self, key: str, owner: str, ttl: float) -> bool:
        """Extend ``owner``'s hold (or take a free key): True while ``owner`` holds it."""

    @abstractmethod
    def release(self, key: str, owner: str | None = None) -> bool:
        """Free ``key`` if ``owner`` holds it (any holder when ``owner`` is None)."""

    @abstractmethod
    def holder(self, key: str) -> str | None:
        """Who holds ``key`` now."""

    @abstractmethod
    def cancel(self, task_id: str) -> None:
        """Remember that ``task_id`` is cancelled (for :data:`CANCEL_TTL`)."""

    @abstractmethod
    def cancelled(self) -> set[str]:
        """The task ids cancelled within the last :data:`CANCEL_TTL`."""

    @abstractmethod
    def uncancel(self, task_id: str) -> None:
        """Forget a cancellation (one that named no known task)."""

    @abstractmethod
    def report(self, worker: str, state: dict[str, Any], ttl: float) -> None:
        """Publish ``worker``'s state (JSON-able) for ``ttl`` seconds."""

    @abstractmethod
    def reports(self) -> list[dict[str, Any]]:
        """The live states published with :meth:`report`."""

    @abstractmethod
    def set_paused(self, queue: str, paused: bool) -> None:
        """Pause or resume ``queue``."""

    @abstractmethod
    def paused(self) -> set[str]:
        """The paused queues."""

    def close(self) -> None:  # noqa: B027 (optional hook)
        """Release connections."""


class MemoryControl(ControlStore):
    """The control store of one process (thread-safe)."""

    shared = False

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._reports: dict[str, tuple[dict[str, Any], float]] = {}
        self._holds: dict[str, tuple[str, float]] = {}
        self._cancelled: dict[str, float] = {}
        self._paused: set[str] = set()

    def _live(self, key: str, now: float) -> tuple[str, float] | None:
        hold = self._holds.get(key)
        if hold is not None and hold[1] <= now:
            del self._holds[key]
            return None
        return hold

    def acquire(self, key: str, owner: str, ttl: float) -> bool:
        now = time.monotonic()
        with self._lock:
            if self._live(key, now) is not None:
                return False
            self._holds[key] = (owner, now + ttl)
            return True

    def renew(self, key: str, owner: str, ttl: float) -> bool:
        now = time.monotonic()
        with self._lock:
            hold = self._live(key, now)
            if hold is not None and hold[0] != owner:
                return False
            self._holds[key] = (owner, now + ttl)
            return True

    def release(self, key: str, owner: str | None = None) -> bool:
        with self._lock:
            hold = self._live(key, time.monotonic())
            if hold is None or (owner is not None and hold[0] != owner):
                return False
            del self._holds[key]
            return True

    def holder(self, key: str) -> str | None:
        with self._lock:
            hold = self._live(key, time.monotonic())
            return hold[0] if hold else None

    def cancel(self, task_id: str) -> None:
        with self._lock:
            self._cancelled[task_id] = time.monotonic() + CANCEL_TTL

    def cancelled(self) -> set[str]:
        now = time.monotonic()
        with self._lock:
            for task_id in [t for t, until in self._cancelled.items() if until <= now]:
                del self._cancelled[task_id]
            return set(self._cancelled)

    def uncancel(self, task_id: str) -> None:
        with self._lock:
            self._cancelled.pop(task_id, None)

    def report(self, worker: str, state: dict[str, Any], ttl: float) -> None:
        with self._lock:
            self._reports[worker] = (state, time.monotonic() + ttl)

    def reports(self) -> list[dict[str, Any]]:
        now = time.monotonic()
        with self._lock:
            for worker in [w for w, (_, until) in self._reports.items() if until <= now]:
                del self._reports[worker]
            return [state for state, _ in self._reports.values()]

    def set_paused(self, queue: str, paused: bool) -> None:
        with self._lock:
            if paused:
                self._paused.add(queue)
            else:
                self._paused.discard(queue)

    def paused(self) -> set[str]:
        with self._lock:
            return set(self._paused)


class RedisControl(ControlStore):
    """The control store on a Redis server (``url`` or an existing redis-py ``client``),
    its keys under ``prefix``."""

    def __init__(self, url: str | None = None, *, client: Any = None, prefix: str = PREFIX) -> None:
        import redis

        if client is None:
            if url is None:
                raise ValueError("RedisControl needs a url or a client")
            client = redis.Redis.from_url(url)
        self._own = url is not None and client is not None
        self.prefix = prefix
        self.client: redis.Redis = client
        self._release = self.client.register_script(_RELEASE)
        self._renew = self.client.register_script(_RENEW)

    def acquire(self, key: str, owner: str, ttl: float) -> bool:
        return bool(self.client.set(self.prefix + key, owner, nx=True, px=max(1, int(ttl * 1000))))

    def renew(self, key: str, owner: str, ttl: float) -> bool:
        return bool(self._renew(keys=[self.prefix + key], args=[owner, max(1, int(ttl * 1000))]))

    def release(self, key: str, owner: str | None = None) -> bool:
        if owner is None:
            return bool(self.client.delete(self.prefix + key))
        return bool(self._release(keys=[self.prefix + key], args=[owner]))

    def holder(self, key: str) -> str | None:
        value = self.client.get(self.prefix + key)
        return value.decode() if isinstance(value, bytes) else value

    def cancel(self, task_id: str) -> None:
        self.client.zadd(self.prefix + "cancelled", {task_id: time.time()})

    def cancelled(self) -> set[str]:
        key = self.prefix + "cancelled"
        pipe = self.client.pipeline()
        pipe.zremrangebyscore(key, 0, time.time() - CANCEL_TTL)
        pipe.zrange(key, 0, -1)
        members = pipe.execute()[1]
        return {m.decode() for m in members}

    def uncancel(self, task_id: str) -> None:
        self.client.zrem(self.prefix + "cancelled", task_id)

    def report(self, worker: str, state: dict[str, Any], ttl: float) -> None:
        payload = json.dumps(state, default=str)
        self.client.set(f"{self.prefix}worker:{worker}", payload, px=max(1, int(ttl * 1000)))

    def reports(self) -> list[dict[str, Any]]:
        keys = list(self.client.scan_iter(match=f"{self.prefix}worker:*", count=1000))
        values = self.client.mget(keys) if keys else []
        return [json.loads(v) for v in values if v is not None]

    def set_paused(self, queue: str, paused: bool) -> None:
        if paused:
            self.client.sadd(self.prefix + "paused", queue)
        else:
            self.client.srem(self.prefix + "paused", queue)

    def paused(self) -> set[str]:
        members: set[bytes] = self.client.smembers(self.prefix + "paused")  # type: ignore[assignment]
        return {m.decode() for m in members}

    def close(self) -> None:
        if self._own:
            self.client.close()


_memory: weakref.WeakKeyDictionary[Any, MemoryControl] = weakref.WeakKeyDictionary()
_memory_lock = threading.Lock()


def control_for(broker: dramatiq.Broker, url: str | None = None) -> ControlStore:
    """The control store of ``broker``'s deployment: Redis at ``url`` when given, the
    Redis broker's own server, else one :class:`MemoryControl` per broker object
    (a StubBroker; for RabbitMQ across processes pass a Redis ``url``)."""
    if url is not None:
        return RedisControl(url)
    client = getattr(broker, "client", None)
    if client is not None and type(broker).__name__ == "RedisBroker":
        return RedisControl(client=client)
    if type(broker).__name__ == "RabbitmqBroker":
        logger.info(
            "tasks on RabbitMQ keep locks, cancellations and pauses in this process; "
            "pass a Redis control URL to share them between processes"
        )
    with _memory_lock:
        store = _memory.get(broker)
        if store is None:
            store = _memory[broker] = MemoryControl()
        return store
