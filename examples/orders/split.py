"""The order system split across two process trees, talking through remote refs.

``troupe demo --broker URL --split`` runs the order intake, the event bus and the saga
in the demo's process, and the saga's steps (inventory, payment, confirmation) with
their ledgers in a second tree it starts with::

    troupe run troupe.examples.orders.split:steps --broker URL --cluster NAME \\
        --export NAME.ledgers=orders.ledgers

The saga asks the steps through the broker (:class:`~troupe.actors.saga.StepAction`
and its replies are registered wire types: JSON, never pickle). The demo first asks
``NAME.ledgers`` to :class:`SetUp` the steps (stock, balances, injected crashes),
which starts the step actors and exports them as ``NAME.inventory``,
``NAME.payment`` and ``NAME.confirmation``; at the end it asks for a :class:`Report`
(stock and money balanced, each effect once).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from troupe import Actor, ActorSystem
from troupe.actors import wire_type
from troupe.actors.cluster import cluster_of
from troupe.supervisors import start_supervisor

from .ledgers import Inventory, Mailer, Payments
from .steps import CONFIRMATION, INVENTORY, PAYMENT, STEP_NAMES, Faults, steps_spec

LEDGERS = "orders.ledgers"
_ACTORS = {"inventory": INVENTORY, "payment": PAYMENT, "confirmation": CONFIRMATION}


@wire_type(name="orders.SetUp")
@dataclass(frozen=True)
class SetUp:
    """Start the step actors on these ledgers and export them to the cluster."""

    stock: dict[str, int]
    balances: dict[str, int]
    crash_every: int = 0


@wire_type(name="orders.GetReport")
@dataclass(frozen=True)
class GetReport:
    """Ask for a :class:`Report`."""


@wire_type(name="orders.Report")
@dataclass(frozen=True)
class Report:
    """What the steps did to the ledgers."""

    inventory_balanced: bool
    money_balanced: bool
    effects_once: bool
    injected_crashes: int
    restarts: int  # actor restarts in the steps tree


def step_names(cluster: str) -> dict[str, str]:
    """The exported name of each step in cluster ``cluster``: ``<cluster>.<step>``."""
    return {step: f"{cluster}.{step}" for step in STEP_NAMES}


class Ledgers(Actor):
    """Owns the steps' ledgers: :class:`SetUp` starts and exports the steps (once);
    :class:`GetReport` tells how they stand."""

    def __init__(self) -> None:
        self.ledgers: tuple[Inventory, Payments, Mailer, Faults] | None = None

    async def receive(self, message: Any) -> Any:
        if isinstance(message, SetUp):
            return await self._set_up(message)
        if isinstance(message, GetReport):
            if self.ledgers is None:
                raise RuntimeError("the steps were not set up yet (send SetUp first)")
            inventory, payments, mailer, faults = self.ledgers
            histories = (inventory.history, payments.history, mailer.history)
            return Report(
                inventory_balanced=inventory.balanced(),
                money_balanced=payments.balanced(),
                effects_once=all(len(h) == len(set(h)) for h in histories),
                injected_crashes=faults.crashes,
                restarts=self.system.restarts,
            )
        raise TypeError(f"the ledgers expect SetUp or GetReport, got {message!r}")

    async def _set_up(self, message: SetUp) -> str:
        if self.ledgers is not None:
            raise RuntimeError("the steps are already set up")
        ledgers = (
            Inventory(message.stock),
            Payments(message.balances),
            Mailer(),
            Faults(inventory_crash_every=message.crash_every),
        )
        self.ledgers = ledgers
        await start_supervisor(self.system, steps_spec(*ledgers))
        cluster = cluster_of(self.system)
        for step, name in step_names(cluster.name).items():
            await cluster.export(self.system.lookup(_ACTORS[step]), name)
        return "ready"


def steps(system: ActorSystem) -> None:
    """The steps tree (``troupe run ...:steps --broker URL``): the ledgers actor, which
    starts the step actors when the demo sends :class:`SetUp`."""
    system.spawn(Ledgers, name=LEDGERS)
