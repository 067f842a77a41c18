"""The docstring examples of troupe.testing and its upper-layer helpers run as written."""

from __future__ import annotations

import doctest
import importlib

import pytest

MODULES = [
    "troupe.hooks",
    "troupe.testing",
    "troupe.testing.simloop",
    "troupe.testing.fault_plan",
    "troupe.testing.injector",
    "troupe.testing.trace",
    "troupe.testing.simulation",
    "troupe.testing.strategies",
    "troupe.testing.exploring",
    "troupe.testing.invariants",
    "troupe.testing.machine",
    "troupe.brokers.faults",
    "troupe.supervisors.testing_faults",
    "troupe.actors.testing",
]


@pytest.mark.parametrize("name", MODULES)
def test_docstring_examples(name: str) -> None:
    result = doctest.testmod(importlib.import_module(name))
    assert result.failed == 0 and result.attempted > 0
