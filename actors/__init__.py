"""troupe.actors: ready-made actors — event bus, retries, idempotency, sagas.

>>> from troupe.actors import EventBus, Retry, Idempotent, SagaOrchestrator

- :class:`EventBus` routes events by topic (exact, ``*``, ``#``) to subscriber
  actors; :class:`BusBridge` carries topics through a broker stream.
- :class:`Retry` is the shared Backoff as a retry policy (decorator or wrapper).
- :class:`Idempotent` runs an effect once per key over an IdempotencyStore.
- :func:`export` / :func:`remote`: actors across processes and machines over a broker
  (:class:`RemoteRef`; see :mod:`troupe.actors.remote`); :func:`wire_type` lets a
  dataclass travel to them as JSON; :mod:`troupe.actors.cluster` joins process trees
  started separately (``troupe run --broker``) into one system.
- :class:`SagaOrchestrator` runs :class:`SagaDefinition` steps (actors) with
  compensation, persisted in a saga log, resumed after a crash.

Redis and Prometheus pieces live in :mod:`troupe.actors.saga_log_redis` and
:mod:`troupe.actors.saga_metrics` (they need the ``redis``/``metrics`` extras).
"""

from . import saga_observe as _saga_observe  # noqa: F401  (registers the sagas section)
from .bus import EventBus, event_topic
from .bus_bridge import BusBridge, DataclassCodec, EventCodec
from .idempotency import Atomic, Deduplicate, Idempotent, LeaseLost, StillInProgress
from .remote import RemoteNode, RemoteRef, export, remote, remote_node
from .remote_errors import LeaseExpired, MemberLost, NoMembers, RemoteError
from .retry import Retry
from .saga import (
    GetSaga,
    GetSagaStats,
    ParkedSagas,
    Rejected,
    RetryParked,
    SagaDefinition,
    SagaFinished,
    SagaOrchestrator,
    SagaStats,
    SagaStep,
    StartSaga,
    Step,
    StepAction,
    StepCompensation,
    StepRejected,
)
from .saga_log import MemorySagaLog, SagaFenced, SagaLog, SagaRecord, SagaStatus
from .topics import TopicPattern, topic_of
from .wire_types import wire_type

__all__ = [
    "Atomic",
    "BusBridge",
    "DataclassCodec",
    "Deduplicate",
    "EventBus",
    "EventCodec",
    "GetSaga",
    "GetSagaStats",
    "Idempotent",
    "LeaseExpired",
    "LeaseLost",
    "MemberLost",
    "MemorySagaLog",
    "NoMembers",
    "ParkedSagas",
    "Rejected",
    "RemoteError",
    "RemoteNode",
    "RemoteRef",
    "Retry",
    "RetryParked",
    "SagaDefinition",
    "SagaFenced",
    "SagaFinished",
    "SagaLog",
    "SagaOrchestrator",
    "SagaRecord",
    "SagaStats",
    "SagaStatus",
    "SagaStep",
    "StartSaga",
    "Step",
    "StepAction",
    "StepCompensation",
    "StepRejected",
    "StillInProgress",
    "TopicPattern",
    "event_topic",
    "export",
    "remote",
    "remote_node",
    "topic_of",
    "wire_type",
]
