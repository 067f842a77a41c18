"""Which queue a free worker takes its next task from: weighted or strict priority.

Weighted (Asynq's default): among the queues that have a task ready, picks
follow the weights — smooth weighted round-robin (nginx's), so the shares are
exact over any window rather than only on average. A queue with nothing ready
takes no turns and earns no credit: its weight goes to the others.

>>> picker = Picker({"critical": 6, "default": 3, "low": 1})
>>> picks = [picker.pick(lambda q: True) for _ in range(10)]
>>> {q: picks.count(q) for q in ("critical", "default", "low")}
{'critical': 6, 'default': 3, 'low': 1}
>>> Picker({"critical": 6, "low": 1}, strict=True).pick(lambda q: True)
'critical'
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping

from troupe.errors import ConfigError

logger = logging.getLogger(__name__)


def check_weights(queues: Mapping[str, int]) -> dict[str, int]:
    """The queue weights, checked: names, whole weights of at least 1."""
    if not isinstance(queues, Mapping) or not queues:
        raise ConfigError("queues", f"must map queue names to weights, got {queues!r}")
    checked: dict[str, int] = {}
    for name, weight in queues.items():
        if not isinstance(name, str) or not name or name.endswith((".DQ", ".XQ")):
            raise ConfigError("queues", f"{name!r} is not a queue name")
        if isinstance(weight, bool) or not isinstance(weight, int) or weight < 1:
            raise ConfigError(
                f"queues[{name!r}]", f"weight must be a whole number >= 1, got {weight!r}"
            )
        checked[name] = weight
    return checked


class Picker:
    """Weighted (default) or strict choice among queues; not thread-safe (its caller locks)."""

    __slots__ = ("_credit", "_order", "strict", "weights")

    def __init__(self, queues: Mapping[str, int], *, strict: bool = False) -> None:
        self.weights = check_weights(queues)
        self.strict = strict
        # strict: highest weight first (ties keep the given order)
        self._order = sorted(self.weights, key=lambda q: -self.weights[q])
        self._credit = dict.fromkeys(self.weights, 0)

    def pick(self, ready: Callable[[str], bool]) -> str | None:
        """The queue to take from next, among those ``ready`` accepts; None if none is."""
        if self.strict:
            for queue in self._order:
                if ready(queue):
                    return queue
            return None
        credit = self._credit
        best: str | None = None
        total = 0
        for queue in self._order:
            if not ready(queue):
                continue
            weight = self.weights[queue]
            total += weight
            credit[queue] += weight
            if best is None or credit[queue] > credit[best]:
                best = queue
        if best is not None:
            credit[best] -= total
        return best
