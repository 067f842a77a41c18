"""What the observer sees of one ActorSystem: sections, readiness checks and actions.

The observer (``troupe top``, the ``/observer`` page, ``/healthz`` and
``/readyz``) reads a system only when someone looks: nothing here runs per
message or on a timer. Layers above the core add what they know through three
registries, filled when their package is imported:

- :func:`add_section`: ``provider(system)`` returns JSON-ready data (or an
  awaitable of it) shown under that name (the supervision tree, bridges, task
  queues, sagas);
- :func:`add_readiness`: ``check(system)`` returns the problems that make the
  process not ready (a bridge that lost its broker);
- :func:`add_action`: ``action(system, params)`` changes something (restart an
  actor, requeue a dead letter); offered only behind ``--allow-actions`` and a
  token (see :mod:`troupe.observer`).

Everything runs on the system's loop (:func:`snapshot`, :func:`readiness`,
:func:`act` are coroutines); a provider that must block (a sync broker client)
uses ``asyncio.to_thread``.

>>> add_section("example", lambda system: {"answer": 42})
>>> "example" in sections()
True
>>> remove_section("example")
"""

from __future__ import annotations

import asyncio
import inspect
import logging
import os
import time
from collections.abc import Awaitable, Callable, Mapping
from typing import TYPE_CHECKING, Any

from .child import Child
from .errors import TroupeError
from .metrics.stats import BUCKET0, BUCKETS, DEPTH, FAILED, LIVE, RESTARTS, SUM_NS

if TYPE_CHECKING:
    from .system import ActorSystem

logger = logging.getLogger(__name__)

Section = Callable[["ActorSystem"], Any]
Readiness = Callable[["ActorSystem"], Any]  # -> list[str] or an awaitable of it
Action = Callable[["ActorSystem", Mapping[str, Any]], Any]

_SECTIONS: dict[str, Section] = {}
_READINESS: dict[str, Readiness] = {}
_ACTIONS: dict[str, Action] = {}


class ActionError(TroupeError):
    """An action could not be done (unknown actor, no such dead letter); says why."""


def add_section(name: str, provider: Section) -> None:
    """Show ``provider(system)`` under ``name`` in every snapshot (replaces one of that name)."""
    _SECTIONS[name] = provider


def remove_section(name: str) -> None:
    """Stop showing the section ``name``."""
    _SECTIONS.pop(name, None)


def sections() -> list[str]:
    """The names of the registered sections."""
    return list(_SECTIONS)


def add_readiness(name: str, check: Readiness) -> None:
    """Count ``check(system)``'s problems (strings) against readiness."""
    _READINESS[name] = check


def add_action(name: str, action: Action) -> None:
    """Offer ``action(system, params)`` under ``name`` (its return value is the reply)."""
    _ACTIONS[name] = action


def actions() -> list[str]:
    """The names of the registered actions."""
    return sorted(_ACTIONS)


async def _call(fn: Callable[..., Any], *args: Any) -> Any:
    result = fn(*args)
    if inspect.isawaitable(result):
        result = await result
    return result


async def snapshot(system: ActorSystem) -> dict[str, Any]:
    """The system as plain data: process, loop, counters, actor groups and every section.

    A section that fails shows ``{"error": ...}``; the others are still there.
    """
    data: dict[str, Any] = {
        "system": system.name,
        "pid": os.getpid(),
        "time": time.time(),
        "loop": loop_state(system),
        "counts": {
            "actors": len(system.cells()),
            "failures": system.failures,
            "restarts": system.restarts,
            "dropped": system.dropped,
            "stopped_by_policy": system.stopped_by_policy,
        },
        "groups": groups(system),
    }
    for name, provider in list(_SECTIONS.items()):
        try:
            data[name] = await _call(provider, system)
        except Exception as exc:
            logger.exception("observer section %s failed", name)
            data[name] = {"error": f"{type(exc).__name__}: {exc}"}
    return data


def loop_state(system: ActorSystem) -> dict[str, float]:
    """The loop-lag monitor's latest and largest lateness (seconds)."""
    monitor = system.loop_lag
    if monitor is None:
        return {"lag": 0.0, "lag_max": 0.0}
    return {"lag": monitor.last, "lag_max": monitor.max}


def groups(system: ActorSystem) -> dict[str, dict[str, Any]]:
    """Every metrics group's cumulative counters (rates come from two snapshots)."""
    metrics = system.metrics
    if metrics is None:
        return {}
    metrics.sample_gauges()
    out: dict[str, dict[str, Any]] = {}
    for stats in metrics.groups():
        counts = stats.counts
        buckets = list(counts[BUCKET0 : BUCKET0 + len(BUCKETS) + 1])
        out[stats.label] = {
            "handled": sum(buckets),
            "failed": counts[FAILED],
            "restarts": counts[RESTARTS],
            "depth": counts[DEPTH],
            "live": counts[LIVE],
            "seconds": counts[SUM_NS] / 1e9,
            "buckets": buckets,
        }
    return out


async def readiness(system: ActorSystem) -> list[str]:
    """What keeps the system from being ready (empty when ready)."""
    problems: list[str] = []
    if system.is_closing:
        problems.append(f"system {system.name} is shutting down")
    for name, check in list(_READINESS.items()):
        try:
            problems.extend(str(p) for p in await _call(check, system) or ())
        except Exception as exc:
            problems.append(f"{name}: check failed: {type(exc).__name__}: {exc}")
    return problems


async def act(system: ActorSystem, action: str, params: Mapping[str, Any]) -> Any:
    """Run the action ``action``; raises :class:`ActionError` for an unknown one."""
    fn = _ACTIONS.get(action)
    if fn is None:
        raise ActionError(f"no action {action!r} (actions: {', '.join(actions())})")
    return await _call(fn, system, params)


def find_child(system: ActorSystem, name: Any) -> Child:
    """The live actor called ``name``; raises :class:`ActionError` when there is none."""
    if not isinstance(name, str) or not name:
        raise ActionError("give the actor's name as 'actor'")
    ref = system.find(name)
    if ref is None or not ref.is_alive:
        raise ActionError(f"no live actor named {name!r} in system {system.name}")
    return Child.of(ref)


def _restart(system: ActorSystem, params: Mapping[str, Any]) -> str:
    child = find_child(system, params.get("actor"))
    child.restart()
    return f"restarting {child.name}"


async def _stop(system: ActorSystem, params: Mapping[str, Any]) -> str:
    child = find_child(system, params.get("actor"))
    await asyncio.wait_for(asyncio.shield(child.stop()), 5.0)
    return f"stopped {child.name}"


add_action("restart", _restart)
add_action("stop", _stop)


def run_on_loop(system: ActorSystem, work: Callable[[], Awaitable[Any]], timeout: float) -> Any:
    """Run ``work()`` on the system's loop from another thread; its result within
    ``timeout`` seconds (``TimeoutError`` otherwise: the loop is blocked)."""
    future = asyncio.run_coroutine_threadsafe(_await(work), system.loop)
    try:
        return future.result(timeout)
    except TimeoutError:
        future.cancel()
        raise


async def _await(work: Callable[[], Awaitable[Any]]) -> Any:
    return await work()


__all__ = [
    "ActionError",
    "act",
    "actions",
    "add_action",
    "add_readiness",
    "add_section",
    "find_child",
    "groups",
    "loop_state",
    "readiness",
    "remove_section",
    "run_on_loop",
    "sections",
    "snapshot",
]
