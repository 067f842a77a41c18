"""Sagas in the observer: running, compensating and parked; retry a parked saga.

Registered on import of :mod:`troupe.actors` (see :mod:`troupe.observe`). The
``sagas`` section has one row per saga orchestrator of a system: its counters,
how many sagas of it are running and compensating (read from its saga log) and
the parked ones (``needs_attention``) with the failed step and error. The action
``retry_saga`` (``{"saga": orchestrator name, "id": saga id}``) compensates a
parked saga again, as :class:`~troupe.actors.RetryParked` does.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from dataclasses import asdict
from typing import TYPE_CHECKING, Any

from troupe import Child, observe

from .saga import SagaOrchestrator
from .saga_definition import RetryParked
from .saga_log import SagaStatus

if TYPE_CHECKING:
    from troupe import ActorSystem

PARKED_SHOWN = 50
LOG_TIMEOUT = 2.0


def _orchestrators(system: ActorSystem) -> list[tuple[Child, SagaOrchestrator]]:
    found = []
    for ref in system.actors():
        child = Child.of(ref)
        if isinstance(child.actor, SagaOrchestrator):
            found.append((child, child.actor))
    return found


async def sagas_section(system: ActorSystem) -> list[dict[str, Any]]:
    """Every saga orchestrator of ``system`` with its running, compensating and parked sagas."""
    rows = []
    for child, orchestrator in _orchestrators(system):
        saga = orchestrator.definition.name
        counts: dict[str, Any] = {}
        parked: list[dict[str, Any]] = []
        try:
            for status in (SagaStatus.RUNNING, SagaStatus.COMPENSATING):
                records = await asyncio.wait_for(
                    orchestrator.log.records(saga, [status]), LOG_TIMEOUT
                )
                counts[status.value] = len(records)
            needs = await asyncio.wait_for(
                orchestrator.log.records(saga, [SagaStatus.NEEDS_ATTENTION]), LOG_TIMEOUT
            )
            parked = [
                {"id": r.saga_id, "failed_step": r.failed_step, "error": r.error, "cause": r.cause}
                for r in needs[:PARKED_SHOWN]
            ]
            counts["needs_attention"] = len(needs)
            problem = None
        except Exception as exc:  # a saga log on a broker that is away
            problem = f"saga log not read: {type(exc).__name__}: {exc}"
        rows.append(
            {
                "name": child.name,
                "saga": saga,
                "running": counts.get("running"),
                "compensating": counts.get("compensating"),
                "needs_attention": counts.get(
                    "needs_attention", orchestrator.stats.needs_attention
                ),
                "stats": asdict(orchestrator.stats),
                "parked": parked,
                "problem": problem,
            }
        )
    return rows


async def retry_saga(system: ActorSystem, params: Mapping[str, Any]) -> str:
    """Compensate the parked saga ``id`` of orchestrator ``saga`` again."""
    name, saga_id = params.get("saga"), params.get("id")
    for child, _orchestrator in _orchestrators(system):
        if child.name == name:
            outcome = await child.ref.ask(RetryParked(str(saga_id)), timeout=LOG_TIMEOUT * 2)
            if outcome == "not parked":
                raise observe.ActionError(f"saga {saga_id!r} of {name} is not parked")
            return f"saga {saga_id} of {name}: {outcome}"
    raise observe.ActionError(f"no saga orchestrator named {name!r} in system {system.name}")


observe.add_section("sagas", sagas_section)
observe.add_action("retry_saga", retry_saga)
