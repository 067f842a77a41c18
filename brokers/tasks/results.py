"""Task results, kept for a retention time where stock dramatiq's Results API reads them.

>>> from dramatiq.results.backends import StubBackend
>>> from troupe.brokers.tasks import Results, read_result
>>> results = Results(StubBackend(), ttl=60)      # WorkerPool(..., middleware=[..., results])
>>> read_result(results.backend, "default", "add", "no-such-id")
MISSING

Opt-in: add :class:`Results` to a pool's middleware (``troupe tasks worker
--result-ttl``). After an attempt that succeeded it stores the handler's
return value, after the last failed attempt (dead-lettered) the exception,
for ``ttl`` seconds (a message's dramatiq ``result_ttl`` option, in ms,
overrides it). It writes through a :class:`dramatiq.results.ResultBackend`
under dramatiq's own keys, so ``message.get_result(backend=RedisBackend(...))``
in a stock dramatiq program reads what troupe's workers stored, and
:func:`read_result` reads what either stored.
"""

from __future__ import annotations

import logging
import threading
import weakref
from typing import TYPE_CHECKING, Any

import dramatiq
from dramatiq import Message
from dramatiq.results import ResultBackend, ResultFailure, ResultMissing
from dramatiq.results.backends import StubBackend

from troupe.errors import ConfigError

from .context import Attempt
from .middleware import TaskMiddleware
from .transport import broker_kind

if TYPE_CHECKING:
    from .runner import Runner

logger = logging.getLogger(__name__)

#: dramatiq's default result retention: 10 minutes.
DEFAULT_RESULT_TTL = 600.0

#: What :func:`read_result` returns when no result is stored (none yet, or expired).
MISSING: Any = type("Missing", (), {"__repr__": lambda self: "MISSING"})()

_stub_backends: weakref.WeakKeyDictionary[Any, StubBackend] = weakref.WeakKeyDictionary()
_stub_lock = threading.Lock()


class Results(TaskMiddleware):
    """Store return values and final failures in ``backend`` for ``ttl`` seconds."""

    def __init__(self, backend: ResultBackend, ttl: float = DEFAULT_RESULT_TTL) -> None:
        if not isinstance(backend, ResultBackend):
            raise ConfigError(
                "results backend", f"must be a dramatiq ResultBackend, got {backend!r}"
            )
        if not ttl > 0:
            raise ConfigError("result_ttl", f"must be more than zero seconds, got {ttl!r}")
        self.backend = backend
        self.ttl_ms = max(1, int(ttl * 1000))

    def after_process(self, runner: Runner, attempt: Attempt) -> None:
        proxy = attempt.job.proxy
        ttl = int(proxy.options.get("result_ttl") or self.ttl_ms)
        if attempt.dead:
            exc = attempt.exception or Exception("dead-lettered")
            self.backend.store_exception(proxy, _as_exception(exc), ttl)
        elif attempt.exception is None and attempt.outcome in ("done", "overran"):
            self.backend.store_result(proxy, attempt.result, ttl)


def _as_exception(exc: BaseException) -> Exception:
    return exc if isinstance(exc, Exception) else Exception(repr(exc))


def result_backend(broker: dramatiq.Broker, redis_url: str | None = None) -> ResultBackend:
    """The result backend of ``broker``'s deployment: a dramatiq ``RedisBackend`` on
    ``redis_url`` or on the Redis broker's server; one ``StubBackend`` per StubBroker.
    RabbitMQ keeps no results: give a Redis URL (ConfigError otherwise)."""
    from dramatiq.results.backends import RedisBackend

    backend: ResultBackend
    if redis_url is not None:
        backend = RedisBackend(url=redis_url)
        return backend
    kind = broker_kind(broker)
    if kind == "redis":
        backend = RedisBackend(client=getattr(broker, "client"))  # noqa: B009
        return backend
    if kind == "stub":
        with _stub_lock:
            stub = _stub_backends.get(broker)
            if stub is None:
                stub = _stub_backends[broker] = StubBackend()
            return stub
    raise ConfigError(
        "results", f"a {type(broker).__name__} keeps no results; give a Redis URL to keep them in"
    )


def read_result(backend: ResultBackend, queue: str, task: str, task_id: str) -> Any:
    """The stored result of task ``task_id`` (type ``task``, on ``queue``): its return
    value, :data:`MISSING`, or raises dramatiq's ``ResultFailure`` for a dead task."""
    message: Message[Any] = Message(queue, task, (), {}, {}, message_id=task_id)
    try:
        return backend.get_result(message)
    except ResultMissing:
        return MISSING


__all__ = [
    "DEFAULT_RESULT_TTL",
    "MISSING",
    "ResultFailure",
    "Results",
    "read_result",
    "result_backend",
]
