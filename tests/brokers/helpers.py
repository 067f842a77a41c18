"""Shared pieces of the broker tests."""

from __future__ import annotations

from troupe import RestartPolicy
from troupe.backoff import Backoff

#: Targets in these tests fail on purpose, often: restart them at once, never give up.
TOLERANT = RestartPolicy(
    max_restarts=1_000_000, within=1.0, backoff=Backoff(initial=0.001, maximum=0.001, jitter="none")
)
