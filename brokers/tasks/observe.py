"""Task queues in the observer: size, scheduled, retrying and dead, with the dead tasks.

Registered on import of :mod:`troupe.brokers.tasks` (see :mod:`troupe.observe`).
The ``tasks`` section has a row per queue of every :class:`WorkerPool` running
in a system (:func:`~troupe.brokers.tasks.queue_stats`), with the newest dead
tasks and their errors; queues are shared by the deployment, so the observer
shows each once however many worker processes report it. The inspector's
broker calls block, so they run on a worker thread, and only while someone
looks. Actions ``requeue_task`` and ``delete_task`` take ``{"queue", "id"}``.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from troupe import Child, observe

from .inspector import Inspector
from .pool import Watcher
from .transport import broker_kind

if TYPE_CHECKING:
    import dramatiq

    from troupe import ActorSystem

DEAD_SHOWN = 20


def _brokers(system: ActorSystem) -> list[tuple[dramatiq.Broker, list[str]]]:
    found: dict[int, tuple[dramatiq.Broker, list[str]]] = {}
    for ref in system.actors():
        actor = Child.of(ref).actor
        if isinstance(actor, Watcher):
            pool = actor.pool
            found.setdefault(id(pool.broker), (pool.broker, list(pool.queues)))
    return list(found.values())


def _rows(broker: dramatiq.Broker, queues: list[str]) -> list[dict[str, Any]]:
    inspector = Inspector(broker)
    kind = broker_kind(broker)
    rows = []
    for stats in inspector.queues(queues):
        dead = inspector.dead(stats.queue)[-DEAD_SHOWN:] if stats.dead else []
        rows.append(
            {
                **stats.as_dict(),
                "broker": kind,
                "dedupe": f"tasks:{kind}:{stats.queue}",
                "dead_tasks": [
                    {"id": r.id, "task": r.task, "error": r.error, "retries": r.retries}
                    for r in reversed(dead)
                ],
            }
        )
    return rows


async def tasks_section(system: ActorSystem) -> list[dict[str, Any]]:
    """Every queue of the system's worker pools (see the module docstring)."""
    rows: list[dict[str, Any]] = []
    for broker, queues in _brokers(system):
        rows.extend(await asyncio.to_thread(_rows, broker, queues))
    return rows


async def _on_dead(system: ActorSystem, params: Mapping[str, Any], requeue: bool) -> str:
    queue, task_id = str(params.get("queue")), str(params.get("id"))
    for broker, queues in _brokers(system):
        if queue not in queues:
            continue
        inspector = Inspector(broker)
        act = inspector.requeue_dead if requeue else inspector.delete_dead
        if await asyncio.to_thread(act, queue, task_id):
            return f"{'requeued' if requeue else 'deleted'} dead task {task_id} of {queue}"
        raise observe.ActionError(f"no dead task {task_id!r} in queue {queue}")
    raise observe.ActionError(f"no worker pool in system {system.name} runs queue {queue!r}")


async def requeue_task(system: ActorSystem, params: Mapping[str, Any]) -> str:
    """Put a dead task back on its queue, retries reset."""
    return await _on_dead(system, params, True)


async def delete_task(system: ActorSystem, params: Mapping[str, Any]) -> str:
    """Remove a dead task for good."""
    return await _on_dead(system, params, False)


observe.add_section("tasks", tasks_section)
observe.add_action("requeue_task", requeue_task)
observe.add_action("delete_task", delete_task)
