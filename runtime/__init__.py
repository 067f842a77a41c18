"""troupe: an actor runtime for event processing.

>>> from troupe import Actor, ActorSystem, SyncActorSystem, MailboxConfig
"""

from ._version import __version__
from .actor import Actor
from .backoff import Backoff, BackoffState, Jitter
from .cell import State, Terminated
from .child import Child
from .clock import Clock, RealClock, VirtualClock
from .dead_letters import DeadLetter, DeadLetters
from .delivery import DeliveryTracker, PageTracker, Queued
from .errors import (
    ActorNotFound,
    ActorStopped,
    AskTimeout,
    ConfigError,
    MailboxFull,
    MessageDropped,
    NameTaken,
    SystemClosed,
    TroupeError,
)
from .loop import new_event_loop, run
from .mailbox import MailboxConfig, OverflowPolicy
from .middleware import Middleware, MiddlewareChain, SkipMessage
from .props import Props
from .ref import ActorRef
from .restart import RestartPolicy
from .sync import SyncActorSystem
from .system import ActorSystem, ShutdownReport
from .threaded import AdoptedPykkaActor, ThreadActor

__all__ = [
    "Actor",
    "ActorNotFound",
    "ActorRef",
    "ActorStopped",
    "ActorSystem",
    "AdoptedPykkaActor",
    "AskTimeout",
    "Backoff",
    "BackoffState",
    "Child",
    "Clock",
    "ConfigError",
    "DeadLetter",
    "DeadLetters",
    "DeliveryTracker",
    "Jitter",
    "MailboxConfig",
    "MailboxFull",
    "MessageDropped",
    "Middleware",
    "MiddlewareChain",
    "NameTaken",
    "OverflowPolicy",
    "PageTracker",
    "Props",
    "Queued",
    "RealClock",
    "RestartPolicy",
    "ShutdownReport",
    "SkipMessage",
    "State",
    "SyncActorSystem",
    "SystemClosed",
    "Terminated",
    "ThreadActor",
    "TroupeError",
    "VirtualClock",
    "__version__",
    "new_event_loop",
    "run",
]
