"""troupe.supervisors: supervision policy, backoff, supervisors of actors and processes."""

from .backoff import Backoff, BackoffState, Jitter
from .policy import Directive, RestartIntensity, RestartType, Strategy
from .process_hooks import ProcessHooks
from .process_spec import ProcessSpec
from .process_supervisor import ChildState, ChildStatus, ProcessSupervisor, ProcessTreeFailed
from .process_target import TargetError

__all__ = [
    "Backoff",
    "BackoffState",
    "ChildState",
    "ChildStatus",
    "Directive",
    "Jitter",
    "ProcessHooks",
    "ProcessSpec",
    "ProcessSupervisor",
    "ProcessTreeFailed",
    "RestartIntensity",
    "RestartType",
    "Strategy",
    "TargetError",
]
