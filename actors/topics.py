"""Event topics: the name an event is published under, and topic patterns.

A topic is a dot-separated name (``OrderPlaced``, ``orders.payment.failed``).
Patterns follow AMQP topic exchanges: ``*`` matches exactly one segment, ``#``
matches zero or more segments, and ``*`` inside a segment (``Payment*``) matches
any characters within that segment.

>>> TopicPattern("orders.#").matches("orders.payment.failed")
True
>>> TopicPattern("Payment*").matches("PaymentFailed")
True
>>> TopicPattern("orders.*").matches("orders.payment.failed")
False
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from functools import lru_cache
from typing import Any


def topic_of(event: Any) -> str:
    """The topic ``event`` is published under when none is given.

    A class attribute ``topic`` wins, then a mapping's ``"type"`` key, then the
    class name (``OrderPlaced``).
    """
    topic = getattr(type(event), "topic", None)
    if isinstance(topic, str):
        return topic
    if isinstance(event, Mapping):
        kind = event.get("type")
        if isinstance(kind, str):
            return kind
    return type(event).__name__


def pattern_name(pattern: str | type) -> str:
    """A pattern given as a string, or the topic of an event class."""
    if isinstance(pattern, str):
        if not pattern:
            raise ValueError("a topic pattern cannot be empty; use '#' to match every topic")
        return pattern
    topic = getattr(pattern, "topic", None)
    return topic if isinstance(topic, str) else pattern.__name__


class TopicPattern:
    """A compiled topic pattern."""

    __slots__ = ("_regex", "exact", "text")

    def __init__(self, text: str) -> None:
        self.text = text
        self.exact = "*" not in text and "#" not in text
        self._regex = None if self.exact else _compile(text)

    def matches(self, topic: str) -> bool:
        """True when ``topic`` matches this pattern."""
        if self._regex is None:
            return topic == self.text
        return self._regex.fullmatch("." + topic) is not None

    def __repr__(self) -> str:
        return f"TopicPattern({self.text!r})"


@lru_cache(maxsize=1024)
def _compile(text: str) -> re.Pattern[str]:
    """A regex over ``"." + topic``: every segment of the pattern eats its leading dot."""
    parts: list[str] = []
    for segment in text.split("."):
        if segment == "#":
            parts.append(r"(?:\.[^.]+)*")
        elif segment == "*":
            parts.append(r"\.[^.]+")
        else:
            parts.append(r"\." + r"[^.]*".join(re.escape(piece) for piece in segment.split("*")))
    return re.compile("".join(parts))
