"""The order-processing example: idempotent order intake, an event bus and a saga.

``troupe demo`` runs it (see :mod:`troupe.examples.orders.demo`); tests and
users build it with :func:`troupe.examples.orders.app.start_orders`. Names are
imported on first use, so ``troupe --help`` stays fast.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .app import OrderApp, OrderSettings, start_orders
    from .events import (
        CreateOrder,
        OrderCancelled,
        OrderConfirmed,
        OrderPlaced,
        PaymentCompleted,
        PaymentFailed,
    )
    from .ledgers import Inventory, Mailer, Payments

_EXPORTS = {
    "OrderApp": "app",
    "OrderSettings": "app",
    "start_orders": "app",
    "CreateOrder": "events",
    "OrderCancelled": "events",
    "OrderConfirmed": "events",
    "OrderPlaced": "events",
    "PaymentCompleted": "events",
    "PaymentFailed": "events",
    "Inventory": "ledgers",
    "Mailer": "ledgers",
    "Payments": "ledgers",
}

__all__ = [
    "CreateOrder",
    "Inventory",
    "Mailer",
    "OrderApp",
    "OrderCancelled",
    "OrderConfirmed",
    "OrderPlaced",
    "OrderSettings",
    "PaymentCompleted",
    "PaymentFailed",
    "Payments",
    "start_orders",
]


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(f"{__name__}.{module}"), name)
