"""troupe.supervisors: supervision policy, backoff, supervisors of actors and processes."""

from .backoff import Backoff, BackoffState, Jitter
from .policy import Directive, RestartIntensity, RestartType, Strategy

__all__ = [
    "Backoff",
    "BackoffState",
    "Directive",
    "Jitter",
    "RestartIntensity",
    "RestartType",
    "Strategy",
]
