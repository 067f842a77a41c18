"""The docstring examples of the task modules run as written."""

from __future__ import annotations

import doctest
import importlib

import pytest

MODULES = [
    "troupe.brokers.tasks",
    "troupe.brokers.tasks.transport",
    "troupe.brokers.tasks.definitions",
    "troupe.brokers.tasks.picker",
    "troupe.brokers.tasks.control",
    "troupe.brokers.tasks.client",
    "troupe.brokers.tasks.cron",
    "troupe.brokers.tasks.inspector",
    "troupe.brokers.tasks.metrics",
    "troupe.brokers.tasks.context",
    "troupe.brokers.tasks.pool",
    "troupe.examples.orders.tasks",
]


@pytest.mark.parametrize("name", MODULES)
def test_docstring_examples(name: str) -> None:
    result = doctest.testmod(importlib.import_module(name))
    assert result.failed == 0 and result.attempted > 0
