"""W3C trace context (``traceparent``) carried with messages through mailboxes and brokers.

A message's trace travels in its headers under ``traceparent``
(``00-<trace id>-<parent span id>-<flags>``). While an actor handles a message
that has one, every ``tell``/``ask`` it makes carries the same trace id with a
fresh span id, the handler sees it in ``self.headers`` and
:func:`current_trace`, and log records get ``trace_id``/``span_id`` through
:class:`TraceContextFilter`.

New traces are made on entry only when tracing is on
(``ActorSystem(tracing=True)``): then a message sent from outside any traced
handler gets a new ``traceparent``. With tracing off (the default), troupe
never generates ids; it still carries traces that arrive (from a broker
header, or given by the caller) — the cheap choice: a plain ``tell`` costs one
flag test until the first traced message is handled in the process, and one
context-variable read after that.

Broker bridges copy the trace into outgoing broker headers with
:func:`inject` and pass incoming headers to ``tell(headers=...)``.
"""

from __future__ import annotations

import logging
import random
import re
from collections.abc import Callable
from contextvars import ContextVar
from dataclasses import dataclass

logger = logging.getLogger(__name__)

TRACEPARENT = "traceparent"
TRACESTATE = "tracestate"

_PATTERN = re.compile(r"([0-9a-f]{2})-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})(-.*)?")
_ZERO_TRACE = "0" * 32
_ZERO_SPAN = "0" * 16
_random = random.Random()  # own instance: seeding the global random does not repeat ids

#: The ``traceparent`` of the message being handled in this context (None outside traces).
current_traceparent: ContextVar[str | None] = ContextVar("troupe_traceparent", default=None)


class _Propagation:
    """Process-wide switch the tell path tests; on once any trace is seen or made.

    ``ambient`` and ``fresh_spans`` are set by :func:`use_spans` (a span
    library such as :mod:`troupe.otel`); ``tracing=False`` code never reads them.
    """

    __slots__ = ("ambient", "fresh_spans", "on")

    def __init__(self) -> None:
        self.on = False
        self.ambient: Callable[[], str | None] | None = None
        self.fresh_spans = True


PROPAGATION = _Propagation()


@dataclass(frozen=True, slots=True)
class TraceContext:
    """A parsed ``traceparent``: ids are lowercase hex, ``sampled`` is the flag bit.

    >>> ctx = TraceContext.parse("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01")
    >>> ctx.trace_id, ctx.span_id, ctx.sampled
    ('4bf92f3577b34da6a3ce929d0e0e4736', '00f067aa0ba902b7', True)
    >>> TraceContext.parse("garbage") is None
    True
    """

    trace_id: str
    span_id: str
    flags: str = "01"

    @property
    def sampled(self) -> bool:
        """True when the sampled flag is set."""
        return bool(int(self.flags, 16) & 1)

    @classmethod
    def parse(cls, header: str | None) -> TraceContext | None:
        """Parse a ``traceparent`` header; None when it is missing or invalid."""
        if not header:
            return None
        match = _PATTERN.fullmatch(header.strip().lower())
        if match is None:
            return None
        version, trace_id, span_id, flags, rest = match.groups()
        if version == "ff" or (version == "00" and rest):
            return None
        if trace_id == _ZERO_TRACE or span_id == _ZERO_SPAN:
            return None
        return cls(trace_id, span_id, flags)

    @classmethod
    def new(cls, sampled: bool = True) -> TraceContext:
        """A new trace (random ids)."""
        return cls(f"{_random.getrandbits(128):032x}", new_span_id(), "01" if sampled else "00")

    def child(self) -> TraceContext:
        """Same trace, new span id: the context for a message sent while handling this one."""
        return TraceContext(self.trace_id, new_span_id(), self.flags)

    def header(self) -> str:
        """This context as a ``traceparent`` value."""
        return f"00-{self.trace_id}-{self.span_id}-{self.flags}"


def new_span_id() -> str:
    """16 random hex digits (never all zeros)."""
    return f"{_random.getrandbits(64) or 1:016x}"


def current_trace() -> TraceContext | None:
    """The trace of the message being handled, or None.

    >>> current_trace() is None
    True
    """
    return TraceContext.parse(current_traceparent.get())


def enter(headers: dict[str, str]) -> bool:
    """Make the ``traceparent`` in ``headers`` current (the dispatcher calls this).

    Returns True when there was a valid one.
    """
    parsed = TraceContext.parse(headers.get(TRACEPARENT))
    if parsed is None:
        return False
    current_traceparent.set(parsed.header())
    PROPAGATION.on = True
    return True


def leave() -> None:
    """End the current message's trace (the dispatcher calls this)."""
    current_traceparent.set(None)


def enable() -> None:
    """Turn on propagation in this process (an ActorSystem with ``tracing=True`` does)."""
    PROPAGATION.on = True


def use_spans(ambient: Callable[[], str | None] | None) -> None:
    """Hand trace ids over to a span library (:mod:`troupe.otel` calls this).

    From then on a message sent while handling a traced one carries the current
    ``traceparent`` as it is (its span, a real one, is the parent of what the
    message causes) instead of a made-up child span id; and ``ambient`` (the
    library's current span as a ``traceparent``, or None) is where a message
    sent from outside any handler takes its trace from, when ``start_new``.
    ``use_spans(None)`` goes back to troupe's own ids.
    """
    PROPAGATION.ambient = ambient
    PROPAGATION.fresh_spans = ambient is None
    if ambient is not None:
        PROPAGATION.on = True


def outgoing(headers: dict[str, str] | None, start_new: bool) -> dict[str, str] | None:
    """Headers for a message sent now: the current trace's child span added.

    A ``traceparent`` the caller put in ``headers`` wins. Without a current
    trace a new one is started when ``start_new`` (the span library's current
    span when one is in use, see :func:`use_spans`); otherwise ``headers`` is
    returned as it is.
    """
    if headers is not None and TRACEPARENT in headers:
        return headers
    parent = current_traceparent.get()
    if parent is not None:
        if PROPAGATION.fresh_spans:
            value = f"00-{parent[3:35]}-{new_span_id()}-{parent[53:55]}"
        else:
            value = parent
    elif start_new:
        ambient = PROPAGATION.ambient
        if ambient is None:
            value = TraceContext.new().header()
        else:
            found = ambient()
            if found is None:
                return headers
            value = found
    else:
        return headers
    if headers is None:
        return {TRACEPARENT: value}
    return {**headers, TRACEPARENT: value}


def inject(headers: dict[str, str] | None = None) -> dict[str, str]:
    """``headers`` plus the current trace's child ``traceparent`` (for broker publishes)."""
    result = dict(headers or {})
    value = outgoing(None, False)
    if value is not None and TRACEPARENT not in result:
        result.update(value)
    return result


class TraceContextFilter(logging.Filter):
    """A logging filter that adds ``trace_id`` and ``span_id`` to every record.

    Both are empty strings outside a traced message. Attach it to a handler:

    >>> handler = logging.StreamHandler()
    >>> handler.addFilter(TraceContextFilter())
    >>> handler.setFormatter(logging.Formatter("%(trace_id)s %(message)s"))
    """

    def filter(self, record: logging.LogRecord) -> bool:
        header = current_traceparent.get()
        if header is None:
            record.trace_id = ""
            record.span_id = ""
        else:
            record.trace_id = header[3:35]
            record.span_id = header[36:52]
        return True


__all__ = [
    "TRACEPARENT",
    "TraceContext",
    "TraceContextFilter",
    "current_trace",
    "enable",
    "inject",
    "outgoing",
    "use_spans",
]
