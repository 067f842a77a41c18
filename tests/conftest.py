"""Shared test configuration: hypothesis profiles.

Example counts stay modest by default (CI); raise them with
``TROUPE_HYPOTHESIS_PROFILE=deep scripts/test``.
"""

from __future__ import annotations

import os

from hypothesis import HealthCheck, settings

settings.register_profile(
    "ci",
    max_examples=30,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
    print_blob=True,
)
settings.register_profile(
    "deep",
    max_examples=500,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
    print_blob=True,
)
settings.load_profile(os.environ.get("TROUPE_HYPOTHESIS_PROFILE", "ci"))
