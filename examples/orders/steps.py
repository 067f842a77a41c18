"""The order saga's steps, each an actor: reserve stock, charge, confirm.

Business refusals (out of stock, card declined) raise
:class:`~troupe.actors.saga.StepRejected`; anything else (the injected
inventory crash) fails the actor, its supervisor restarts it, and the saga
retries the step.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from troupe.actors.retry import Retry
from troupe.actors.saga import SagaDefinition, SagaStep, Step, StepRejected

from .ledgers import Declined, Inventory, Mailer, OutOfStock, Payments

logger = logging.getLogger(__name__)

INVENTORY = "orders.inventory"
PAYMENT = "orders.payment"
CONFIRMATION = "orders.confirmation"


class InjectedCrash(RuntimeError):
    """A fault the demo injects on purpose (the inventory actor crashing)."""


@dataclass
class Faults:
    """Faults to inject: the inventory actor crashes on every ``inventory_crash_every``-th
    action (0 = never). Counters live here, so they survive the restarts they cause."""

    inventory_crash_every: int = 0
    inventory_calls: int = 0
    crashes: int = 0
    seen: set[str] = field(default_factory=set)

    def before_inventory(self, order_id: str) -> None:
        """Crash now when it is this call's turn (each order crashes at most once)."""
        self.inventory_calls += 1
        every = self.inventory_crash_every
        if every and self.inventory_calls % every == 0 and order_id not in self.seen:
            self.seen.add(order_id)
            self.crashes += 1
            raise InjectedCrash(f"inventory actor crashed while reserving {order_id} (injected)")


class ReserveInventory(SagaStep):
    """Reserve the order's items; compensation releases them."""

    def __init__(self, inventory: Inventory, faults: Faults | None = None) -> None:
        self.inventory = inventory
        self.faults = faults

    def action(self, saga_id: str, data: dict[str, Any]) -> dict[str, Any]:
        if self.faults is not None:
            self.faults.before_inventory(saga_id)
        try:
            self.inventory.reserve(saga_id, data["items"])
        except OutOfStock as exc:
            raise StepRejected(str(exc)) from exc
        return {"reserved": True}

    def compensate(self, saga_id: str, data: dict[str, Any]) -> None:
        self.inventory.release(saga_id)


class ChargePayment(SagaStep):
    """Charge the customer; compensation refunds."""

    def __init__(self, payments: Payments) -> None:
        self.payments = payments

    def action(self, saga_id: str, data: dict[str, Any]) -> dict[str, Any]:
        try:
            self.payments.charge(saga_id, data["customer"], data["amount"])
        except Declined as exc:
            raise StepRejected(str(exc)) from exc
        return {"charged": data["amount"]}

    def compensate(self, saga_id: str, data: dict[str, Any]) -> None:
        self.payments.refund(saga_id)


class SendConfirmation(SagaStep):
    """E-mail the confirmation (the last step; nothing to undo)."""

    def __init__(self, mailer: Mailer) -> None:
        self.mailer = mailer

    def action(self, saga_id: str, data: dict[str, Any]) -> None:
        self.mailer.send(saga_id, data["customer"])


STEP_NAMES = ("inventory", "payment", "confirmation")


def steps_spec(inventory: Inventory, payments: Payments, mailer: Mailer, faults: Faults) -> Any:
    """The supervisor spec of the three step actors (one-for-one, fast restarts: the demo
    crashes the inventory on purpose, often)."""
    from troupe.supervisors import Backoff, ChildSpec, Strategy, SupervisorSpec

    return SupervisorSpec(
        [
            ChildSpec(ReserveInventory, (inventory, faults), name=INVENTORY),
            ChildSpec(ChargePayment, (payments,), name=PAYMENT),
            ChildSpec(SendConfirmation, (mailer,), name=CONFIRMATION),
        ],
        name="orders.steps",
        strategy=Strategy.ONE_FOR_ONE,
        max_restarts=50,
        within=1.0,
        backoff=Backoff(initial=0.001, maximum=0.05, jitter="full"),
    )


def order_saga(
    step_timeout: float = 2.0,
    retry: Retry | None = None,
    actors: Mapping[str, Any] | None = None,
) -> SagaDefinition:
    """The order saga: inventory, payment, confirmation (by actor name, or by the refs in
    ``actors``, keyed by step name: remote refs when the steps run in another tree)."""
    retry = retry or Retry(max_attempts=4, initial=0.01, maximum=0.5)
    found = dict(actors or {})
    inventory = found.get("inventory", INVENTORY)
    payment = found.get("payment", PAYMENT)
    confirmation = found.get("confirmation", CONFIRMATION)
    return SagaDefinition(
        "order",
        (
            Step("inventory", inventory, timeout=step_timeout, retry=retry),
            Step("payment", payment, timeout=step_timeout, retry=retry),
            Step("confirmation", confirmation, timeout=step_timeout, retry=retry, compensate=False),
        ),
        compensation_retry=Retry(max_attempts=6, initial=0.01, maximum=1.0),
    )
