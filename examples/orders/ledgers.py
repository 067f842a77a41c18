"""The "external services" the saga steps talk to: stock, money and mail.

Each operation is idempotent by order id, as real payment and warehouse APIs
are (idempotency keys). Undo operations leave a tombstone, so an action that
arrives after its compensation (a timed-out request that lands late) is
refused instead of taking effect for a cancelled order. State lives here, not
in the actors, so it survives actor restarts.
"""

from __future__ import annotations

import logging

logger = logging.getLogger(__name__)


class OutOfStock(Exception):
    """Not enough stock for an order."""


class Declined(Exception):
    """The payment was refused."""


class Inventory:
    """Stock per SKU and the reservations held by orders."""

    def __init__(self, stock: dict[str, int]) -> None:
        self.initial = dict(stock)
        self.stock = dict(stock)
        self.reservations: dict[str, dict[str, int]] = {}
        self.released: set[str] = set()
        self.history: list[tuple[str, str]] = []  # (operation, order id) that took effect

    def reserve(self, order_id: str, items: dict[str, int]) -> None:
        """Take ``items`` out of stock for ``order_id`` (again: no-op)."""
        if order_id in self.reservations:
            return
        if order_id in self.released:
            raise OutOfStock(f"order {order_id} was cancelled; not reserving")
        missing = [sku for sku, qty in items.items() if self.stock.get(sku, 0) < qty]
        if missing:
            raise OutOfStock(f"out of stock: {', '.join(sorted(missing))}")
        for sku, qty in items.items():
            self.stock[sku] -= qty
        self.reservations[order_id] = dict(items)
        self.history.append(("reserve", order_id))

    def release(self, order_id: str) -> None:
        """Put ``order_id``'s reservation back (no-op when there is none)."""
        self.released.add(order_id)
        items = self.reservations.pop(order_id, None)
        if items is None:
            return
        for sku, qty in items.items():
            self.stock[sku] += qty
        self.history.append(("release", order_id))

    def balanced(self) -> bool:
        """Stock plus reservations equals the initial stock, for every SKU."""
        for sku, initial in self.initial.items():
            held = sum(items.get(sku, 0) for items in self.reservations.values())
            if self.stock[sku] + held != initial:
                return False
        return True


class Payments:
    """Customer balances, the merchant account and the charges per order (in cents)."""

    def __init__(self, balances: dict[str, int]) -> None:
        self.balances = dict(balances)
        self.merchant = 0
        self.total = sum(balances.values())
        self.charges: dict[str, tuple[str, int]] = {}
        self.refunded: set[str] = set()
        self.history: list[tuple[str, str]] = []  # (operation, order id) that took effect

    def charge(self, order_id: str, customer: str, amount: int) -> None:
        """Move ``amount`` from ``customer`` to the merchant for ``order_id`` (again: no-op)."""
        if order_id in self.charges:
            return
        if order_id in self.refunded:
            raise Declined(f"order {order_id} was cancelled; not charging")
        balance = self.balances.get(customer, 0)
        if balance < amount:
            raise Declined(f"card declined: balance {balance} < {amount}")
        self.balances[customer] = balance - amount
        self.merchant += amount
        self.charges[order_id] = (customer, amount)
        self.history.append(("charge", order_id))

    def refund(self, order_id: str) -> None:
        """Give ``order_id``'s charge back (no-op when there is none)."""
        self.refunded.add(order_id)
        charge = self.charges.pop(order_id, None)
        if charge is None:
            return
        customer, amount = charge
        self.balances[customer] += amount
        self.merchant -= amount
        self.history.append(("refund", order_id))

    def balanced(self) -> bool:
        """No money was created or lost, and the merchant holds exactly the live charges."""
        return sum(self.balances.values()) + self.merchant == self.total and self.merchant == sum(
            amount for _, amount in self.charges.values()
        )


class Mailer:
    """Confirmation e-mails sent, one per order."""

    def __init__(self) -> None:
        self.sent: dict[str, str] = {}
        self.history: list[tuple[str, str]] = []

    def send(self, order_id: str, to: str) -> None:
        """Send the confirmation for ``order_id`` (again: no-op)."""
        if order_id not in self.sent:
            self.sent[order_id] = to
            self.history.append(("mail", order_id))
