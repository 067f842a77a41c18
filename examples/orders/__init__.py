"""The order-processing example: idempotent order intake, an event bus and a saga.

``troupe demo`` runs it (see :mod:`troupe.examples.orders.demo`); tests and
users build it with :func:`troupe.examples.orders.app.start_orders`.
"""

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
