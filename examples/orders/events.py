"""Commands and events of the order system (plain dataclasses, JSON-friendly)."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any


@dataclass(frozen=True, slots=True)
class CreateOrder:
    """A customer's order; ``order_id`` is the idempotency key (clients retry with it)."""

    order_id: str
    customer: str
    items: dict[str, int]
    amount: int  # cents


@dataclass(frozen=True, slots=True)
class OrderPlaced:
    """An order was accepted; the order saga starts from it."""

    order_id: str
    customer: str
    items: dict[str, int]
    amount: int


@dataclass(frozen=True, slots=True)
class PaymentCompleted:
    """The order's payment went through."""

    order_id: str
    amount: int


@dataclass(frozen=True, slots=True)
class PaymentFailed:
    """The order's payment was declined (the order is cancelled)."""

    order_id: str
    reason: str


@dataclass(frozen=True, slots=True)
class OrderConfirmed:
    """Every saga step succeeded: stock reserved, paid, confirmation sent."""

    order_id: str


@dataclass(frozen=True, slots=True)
class OrderCancelled:
    """The saga failed and was compensated (stock released, payment refunded)."""

    order_id: str
    failed_step: str | None
    reason: str | None


EVENT_TYPES: dict[str, type[Any]] = {
    cls.__name__: cls
    for cls in (
        CreateOrder,
        OrderPlaced,
        PaymentCompleted,
        PaymentFailed,
        OrderConfirmed,
        OrderCancelled,
    )
}


def encode_event(event: Any) -> dict[str, Any]:
    """``{"type": name, "data": fields}`` for a known event."""
    name = type(event).__name__
    if EVENT_TYPES.get(name) is not type(event):
        raise TypeError(f"{name} is not an order event; known: {sorted(EVENT_TYPES)}")
    return {"type": name, "data": asdict(event)}


def decode_event(document: dict[str, Any]) -> Any:
    """The event :func:`encode_event` described."""
    try:
        cls = EVENT_TYPES[document["type"]]
    except KeyError:
        raise ValueError(f"unknown order event {document.get('type')!r}") from None
    return cls(**document["data"])
