"""``FaultInjector``: decides, message by message, whether a planned fault fires.

One injector serves a whole run: its :meth:`hook` is an
:data:`~troupe.hooks.HandlerHook` (``ActorSystem(handler_hook=injector.hook)``
in a real run; a simulation installs it for you), and broker test sessions
ask it with :meth:`decide`. Counts are kept per target name, so "the 3rd
message" survives the actor's restarts. Probabilities are drawn from a
``random.Random(seed)`` of its own, so a run with the same seed and the same
order of messages injects the same faults.

>>> from troupe.testing import Crash, FaultInjector, FaultPlan
>>> injector = FaultInjector(FaultPlan(Crash("worker", at=2)))
>>> [injector.decide("actor", "worker") for _ in range(3)]
[None, Crash('worker', at=2), None]
"""

from __future__ import annotations

import inspect
import logging
import random
from typing import TYPE_CHECKING, Any

from .fault_plan import Crash, Delay, Drop, Fault, FaultPlan, InjectedFault
from .trace import Trace

if TYPE_CHECKING:
    from collections.abc import Callable

    from troupe.actor import Actor
    from troupe.hooks import Handler

logger = logging.getLogger(__name__)

_SALT = 0x5EED_FA17  # faults draw from another sequence than the scheduler


class FaultInjector:
    """Applies a :class:`FaultPlan`; records what it did in ``trace`` (when given).

    ``injected`` counts the faults that fired, by kind (``crash``, ``drop``, ...).
    ``now`` gives the time stamped on trace events (default: 0, or the actor
    system's clock for actor events).
    """

    def __init__(
        self,
        plan: FaultPlan | None = None,
        *,
        seed: int = 0,
        trace: Trace | None = None,
        now: Callable[[], float] | None = None,
    ) -> None:
        self.plan = plan if plan is not None else FaultPlan()
        self.seed = seed
        self.rng = random.Random(seed ^ _SALT)
        self.trace = trace
        self.now = now
        self.injected: dict[str, int] = {}
        self._counts: dict[tuple[str, str], int] = {}
        self._fired: set[tuple[int, str]] = set()
        self._scoped = {scope: self._indexed(scope) for scope in ("actor", "stream")}

    def _indexed(self, scope: str) -> tuple[tuple[int, Fault], ...]:
        return tuple((i, f) for i, f in enumerate(self.plan.faults) if f.scope == scope)

    def count(self, scope: str, name: str, allowed: tuple[type[Fault], ...] = ()) -> int:
        """How many messages of ``name`` (an actor or a stream) were seen so far."""
        key = (scope, name) if not allowed else (f"{scope}:{_kinds(allowed)}", name)
        return self._counts.get(key, 0)

    def decide(
        self, scope: str, name: str, *, allowed: tuple[type[Fault], ...] = ()
    ) -> Fault | None:
        """Count one more message of ``name`` and return the fault that fires on it, if any.

        ``allowed`` (when given) restricts the kinds that may fire: the others
        are not consulted and draw nothing, and messages are counted apart for
        each ``allowed`` set (a broker session counts fetched deliveries for
        :class:`Duplicate`, acks for :class:`Redeliver`, fetches for :class:`Disconnect`).
        """
        key = (scope, name) if not allowed else (f"{scope}:{_kinds(allowed)}", name)
        n = self._counts[key] = self._counts.get(key, 0) + 1
        chosen: Fault | None = None
        for index, fault in self._scoped.get(scope, ()):
            if allowed and not isinstance(fault, allowed):
                continue
            if not fault.matches(name):
                continue
            if fault.at is not None:
                if fault.at == n and (index, name) not in self._fired:
                    self._fired.add((index, name))
                    chosen = chosen or fault
            elif self.rng.random() < fault.p:
                chosen = chosen or fault
        if chosen is not None:
            kind = type(chosen).__name__.lower()
            self.injected[kind] = self.injected.get(kind, 0) + 1
        return chosen

    def note(self, actor: str, kind: str, detail: Any, time: float | None = None) -> None:
        """Record an event in the trace (no-op without one)."""
        if self.trace is None:
            return
        if time is None:
            time = self.now() if self.now is not None else 0.0
        self.trace.record(time, actor, kind, detail)

    # -- the handler hook ---------------------------------------------------------------

    def hook(self, actor: Actor, handler: Handler) -> Handler:
        """A :data:`~troupe.hooks.HandlerHook`: trace each message, inject actor faults."""
        before = self._before
        if inspect.iscoroutinefunction(handler) or inspect.iscoroutinefunction(
            getattr(handler, "__func__", None)
        ):

            async def handle_async(message: Any) -> Any:
                if before(actor, message):
                    return None
                return await handler(message)

            return handle_async

        def handle(message: Any) -> Any:
            if before(actor, message):
                return None
            return handler(message)

        return handle

    def _before(self, actor: Actor, message: Any) -> bool:
        """Trace the message and apply a fault; True when the handler must not run."""
        name = actor.name
        clock = actor.system.clock
        if self._scoped["actor"]:
            fault = self.decide("actor", name)
        else:
            self._counts_only(name)
            fault = None
        if fault is None:
            self.note(name, "handle", message, clock.now())
            return False
        is_tell = not actor.reply_expected
        if isinstance(fault, Crash):
            n = self.count("actor", name)
            self.note(name, "crash", message, clock.now())
            raise InjectedFault(f"injected crash of {name} at its message {n} ({fault!r})")
        if isinstance(fault, Drop) and is_tell:
            self.note(name, "drop", message, clock.now())
            return True
        if isinstance(fault, Delay) and is_tell:
            self.note(name, "delay", message, clock.now())
            ref, sender, headers = actor.ref, actor.sender, dict(actor.headers) or None
            clock.call_later(fault.seconds, _retell, ref, message, sender, headers)
            return True
        self.note(name, "handle", message, clock.now())  # drop/delay spare asks and deliveries
        return False

    def _counts_only(self, name: str) -> None:
        key = ("actor", name)
        self._counts[key] = self._counts.get(key, 0) + 1


def _kinds(allowed: tuple[type[Fault], ...]) -> str:
    return ",".join(kind.__name__ for kind in allowed)


def _retell(ref: Any, message: Any, sender: Any, headers: dict[str, str] | None) -> None:
    try:
        ref.tell(message, sender=sender, headers=headers)
    except Exception as exc:  # a full mailbox refuses it: the delayed tell is lost
        logger.warning("delayed tell to %s lost: %s: %s", ref.name, type(exc).__name__, exc)


__all__ = ["FaultInjector"]
