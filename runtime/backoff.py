"""``Backoff``: exponential delays with jitter, reset after a quiet period.

One type serves actor restarts, process restarts, message retries and broker
reconnects.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from enum import StrEnum

from .errors import ConfigError


class Jitter(StrEnum):
    """How randomness is mixed into a delay (see the AWS architecture blog's terms)."""

    NONE = "none"  # exactly the exponential delay
    FULL = "full"  # uniform in [0, delay]
    EQUAL = "equal"  # uniform in [delay / 2, delay]


@dataclass(frozen=True)
class Backoff:
    """Delay before attempt ``n`` (0-based): ``min(maximum, initial * multiplier**n)``, jittered.

    >>> b = Backoff(initial=0.1, maximum=1.0, multiplier=2.0, jitter="none")
    >>> [b.delay(n) for n in range(5)]
    [0.1, 0.2, 0.4, 0.8, 1.0]

    ``reset_after``: a run this long without failures resets the attempt count
    (used by :class:`BackoffState`).
    """

    initial: float = 0.1
    maximum: float = 30.0
    multiplier: float = 2.0
    jitter: Jitter | str = Jitter.FULL
    reset_after: float = 60.0

    def __post_init__(self) -> None:
        if not self.initial >= 0:
            raise ConfigError("backoff.initial", f"must be zero or positive, got {self.initial!r}")
        if not self.maximum >= self.initial:
            raise ConfigError(
                "backoff.maximum",
                f"must be at least initial ({self.initial!r}), got {self.maximum!r}",
            )
        if not self.multiplier >= 1:
            raise ConfigError("backoff.multiplier", f"must be at least 1, got {self.multiplier!r}")
        if not self.reset_after >= 0:
            raise ConfigError(
                "backoff.reset_after", f"must be zero or positive, got {self.reset_after!r}"
            )
        try:
            object.__setattr__(self, "jitter", Jitter(self.jitter))
        except ValueError:
            raise ConfigError(
                "backoff.jitter", f"must be one of none, full, equal; got {self.jitter!r}"
            ) from None

    def ceiling(self, attempt: int) -> float:
        """The un-jittered delay before ``attempt``."""
        if attempt < 0:
            raise ValueError(f"attempt must be >= 0, got {attempt}")
        if self.initial == 0:
            return 0.0
        # compare exponents, not powers, so huge attempt numbers do not overflow
        delay = self.initial
        for _ in range(attempt):
            delay *= self.multiplier
            if delay >= self.maximum:
                return self.maximum
        return min(delay, self.maximum)

    def bounds(self, attempt: int) -> tuple[float, float]:
        """The smallest and largest delay ``delay(attempt)`` can return."""
        ceiling = self.ceiling(attempt)
        if self.jitter == Jitter.FULL:
            return 0.0, ceiling
        if self.jitter == Jitter.EQUAL:
            return ceiling / 2, ceiling
        return ceiling, ceiling

    def delay(self, attempt: int, rng: random.Random | None = None) -> float:
        """The delay before ``attempt``, with jitter drawn from ``rng``."""
        low, high = self.bounds(attempt)
        if low == high:
            return high
        return (rng or random).uniform(low, high)

    @classmethod
    def none(cls) -> Backoff:
        """No delay at all."""
        return cls(initial=0.0, maximum=0.0, jitter=Jitter.NONE)


def derived_random() -> random.Random:
    """A private ``random.Random`` seeded from the module-level ``random``: independent
    streams, yet seeding ``random`` (as a :mod:`troupe.testing` simulation does)
    repeats every jitter."""
    return random.Random(random.getrandbits(64))


@dataclass
class BackoffState:
    """The attempt counter of one restarting/retrying thing, with the quiet-period reset."""

    backoff: Backoff
    attempt: int = 0
    last_failure: float | None = None
    rng: random.Random = field(default_factory=lambda: derived_random())

    def next_delay(self, now: float) -> float:
        """Record a failure at ``now`` and return the delay before the next attempt."""
        last = self.last_failure
        if last is not None and now - last >= self.backoff.reset_after:
            self.attempt = 0
        delay = self.backoff.delay(self.attempt, self.rng)
        self.attempt += 1
        self.last_failure = now
        return delay

    def reset(self) -> None:
        """Forget past failures."""
        self.attempt = 0
        self.last_failure = None
