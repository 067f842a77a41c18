"""OpenTelemetry spans for troupe (the ``troupe[otel]`` extra): a middleware.

``ActorSystem(tracing=True, middleware=[OpenTelemetry()])`` makes spans with the
messaging semantic conventions:

- ``publish <stream>`` (PRODUCER) per message a :class:`~troupe.brokers.ProducerBridge`
  publishes: ``messaging.system``, ``messaging.destination.name``,
  ``messaging.operation.type`` ``send``, ``messaging.message.id`` once stored;
- ``process <stream>`` (CONSUMER) per delivery a consumer bridge hands to its
  target, ended when the handler returned: also ``messaging.consumer.group.name``,
  ``messaging.destination.partition.id`` and ``messaging.kafka.offset`` where the
  broker has them, and ``troupe.attempt``;
- ``ask <actor>`` (CLIENT) per ``ask`` made inside a trace;
- ``saga <saga> <step> <action|compensation>`` (INTERNAL) per saga step.

Spans link through the W3C ``traceparent`` troupe already carries in headers,
mailboxes and brokers: the publish span is the parent of the process span in
whichever process consumes it; while a handler runs, its current span is the
process (or ask) span that brought the message, so what it sends is a child of
it; a message sent from outside any handler (an HTTP request's) takes the
current OpenTelemetry span as its parent (with ``tracing=True``; an ``ask``
always does). The OpenTelemetry context is set while a handler runs, so the
user's own spans nest under troupe's.

Off unless installed: nothing of this module (nor of OpenTelemetry) is imported
by troupe itself. Asks and saga steps outside any trace make no span.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

from ._version import __version__
from .actor import is_async_callable
from .hooks import Handler
from .middleware import Middleware, SkipMessage
from .tracing import TRACEPARENT, TraceContext, current_traceparent, use_spans

try:
    from opentelemetry import context as otel_context
    from opentelemetry import trace
    from opentelemetry.trace import (
        NonRecordingSpan,
        Span,
        SpanContext,
        SpanKind,
        Status,
        StatusCode,
        TraceFlags,
    )
except ImportError as exc:  # pragma: no cover - the extra is missing
    raise ImportError(
        "troupe.otel needs OpenTelemetry: pip install 'troupe[otel]'"
        " (opentelemetry-api and opentelemetry-sdk)"
    ) from exc

if TYPE_CHECKING:
    from .actor import Actor
    from .ref import ActorRef

logger = logging.getLogger(__name__)

SYSTEM = "messaging.system"
DESTINATION = "messaging.destination.name"
OPERATION_TYPE = "messaging.operation.type"
OPERATION_NAME = "messaging.operation.name"
MESSAGE_ID = "messaging.message.id"
GROUP = "messaging.consumer.group.name"
PARTITION = "messaging.destination.partition.id"
KAFKA_OFFSET = "messaging.kafka.offset"
KAFKA_KEY = "messaging.kafka.message.key"


def _span_header(span: Span) -> str | None:
    ctx = span.get_span_context()
    if not ctx.is_valid:
        return None
    return f"00-{ctx.trace_id:032x}-{ctx.span_id:016x}-{int(ctx.trace_flags):02x}"


def _ambient() -> str | None:
    """The current OpenTelemetry span as a ``traceparent`` (None outside any span)."""
    return _span_header(trace.get_current_span())


def _context_of(header: str | None) -> otel_context.Context | None:
    """An OpenTelemetry context whose current span is the one named by ``header``."""
    parsed = TraceContext.parse(header)
    if parsed is None:
        return None
    span_context = SpanContext(
        trace_id=int(parsed.trace_id, 16),
        span_id=int(parsed.span_id, 16),
        is_remote=True,
        trace_flags=TraceFlags(int(parsed.flags, 16)),
    )
    return trace.set_span_in_context(NonRecordingSpan(span_context))


#: (header, context) of the last message handled: one trace's messages come in a row
_last_handled: tuple[str, otel_context.Context] | None = None


def _handled_context(header: str) -> otel_context.Context:
    """The context of the message being handled (``header`` is troupe's, checked on entry)."""
    global _last_handled
    last = _last_handled
    if last is not None and last[0] == header:
        return last[1]
    span_context = SpanContext(
        trace_id=int(header[3:35], 16),
        span_id=int(header[36:52], 16),
        is_remote=True,
        trace_flags=TraceFlags(int(header[53:55], 16)),
    )
    found = trace.set_span_in_context(NonRecordingSpan(span_context))
    _last_handled = (header, found)
    return found


def _parent(header: str | None = None) -> otel_context.Context | None:
    """The parent for a new span: ``header``, else the message being handled, else the
    current OpenTelemetry context (None when there is no trace at all)."""
    found = _context_of(header or current_traceparent.get())
    if found is not None:
        return found
    if trace.get_current_span().get_span_context().is_valid:
        return otel_context.get_current()
    return None


def _end(span: Span, error: BaseException | None) -> None:
    if error is not None:
        span.record_exception(error)
        span.set_status(Status(StatusCode.ERROR, f"{type(error).__name__}: {error}"))
    span.end()


class OpenTelemetry(Middleware):
    """Spans per publish, delivery handled, ask and saga step (see :mod:`troupe.otel`).

    ``tracer_provider`` defaults to OpenTelemetry's global one. Installing it
    (constructing it) hands troupe's trace ids over to OpenTelemetry in this
    process (:func:`troupe.tracing.use_spans`).
    """

    def __init__(self, tracer_provider: trace.TracerProvider | None = None) -> None:
        self.tracer = trace.get_tracer("troupe", __version__, tracer_provider=tracer_provider)
        self._open: dict[str, Span] = {}  # by the traceparent a span was injected as
        self._delivering: dict[tuple[int, str], str] = {}  # (bridge, entry id) -> span key
        self._steps: dict[tuple[str, str, str], tuple[Span, str | None]] = {}
        use_spans(_ambient)

    def _start(
        self,
        name: str,
        kind: SpanKind,
        parent: otel_context.Context | None,
        attributes: dict[str, Any],
    ) -> tuple[Span, str | None]:
        span = self.tracer.start_span(name, context=parent, kind=kind, attributes=attributes)
        header = _span_header(span)
        if header is not None:
            self._open[header] = span
        return span, header

    def _finish(self, header: str | None, error: BaseException | None) -> None:
        span = self._open.pop(header, None) if header is not None else None
        if span is not None:
            _end(span, error)

    # -- handling: the OpenTelemetry context follows troupe's ---------------------------

    def wrap_handler(self, actor: Actor, handler: Handler) -> Handler:
        if is_async_callable(handler):
            call: Callable[[Any], Awaitable[Any]] = handler

            async def handle_async(message: Any) -> Any:
                header = current_traceparent.get()
                if header is None:
                    return await call(message)
                found = _handled_context(header)
                token = otel_context.attach(found)
                try:
                    return await call(message)
                finally:
                    otel_context.detach(token)

            return handle_async

        def handle(message: Any) -> Any:
            header = current_traceparent.get()
            if header is None:
                return handler(message)
            found = _handled_context(header)
            token = otel_context.attach(found)
            try:
                return handler(message)
            finally:
                otel_context.detach(token)

        return handle

    # -- asks ----------------------------------------------------------------------------------

    def before_ask(self, target: ActorRef, message: Any, headers: dict[str, str]) -> None:
        parent = _parent(headers.get(TRACEPARENT))
        if parent is None:
            return
        _, header = self._start(
            f"ask {target.name}",
            SpanKind.CLIENT,
            parent,
            {"troupe.actor": target.name, "troupe.message.type": type(message).__name__},
        )
        if header is not None:
            headers[TRACEPARENT] = header

    def after_ask(
        self,
        target: ActorRef,
        message: Any,
        headers: dict[str, str],
        result: Any,
        error: BaseException | None,
    ) -> None:
        self._finish(headers.get(TRACEPARENT), error)

    # -- producer bridges ---------------------------------------------------------------------

    def before_publish(
        self, bridge: Actor, stream: str, payload: Any, headers: dict[str, str]
    ) -> None:
        attributes: dict[str, Any] = {
            SYSTEM: _system_of(bridge),
            DESTINATION: stream,
            OPERATION_TYPE: "send",
            OPERATION_NAME: "publish",
        }
        _, header = self._start(
            f"publish {stream}", SpanKind.PRODUCER, _parent(headers.get(TRACEPARENT)), attributes
        )
        if header is not None:
            headers[TRACEPARENT] = header

    def after_publish(
        self,
        bridge: Actor,
        stream: str,
        message_id: str | None,
        headers: dict[str, str],
        error: BaseException | None,
    ) -> None:
        header = headers.get(TRACEPARENT)
        span = self._open.get(header) if header is not None else None
        if span is not None and message_id is not None:
            span.set_attribute(MESSAGE_ID, message_id)
        self._finish(header, error)

    # -- consumer bridges ---------------------------------------------------------------------

    def before_deliver(
        self, bridge: Actor, delivery: Any, payload: Any, headers: dict[str, str]
    ) -> float | None:
        key = (id(bridge), delivery.entry_id)
        earlier = self._delivering.pop(key, None)
        if earlier is not None:  # held back or never started last time: that span ends
            self._finish(earlier, None)
        attributes: dict[str, Any] = {
            SYSTEM: _system_of(bridge),
            DESTINATION: delivery.stream,
            OPERATION_TYPE: "process",
            OPERATION_NAME: "process",
            GROUP: delivery.group,
            "troupe.attempt": delivery.attempts + 1,
        }
        message = delivery.message
        if message is not None:
            attributes[MESSAGE_ID] = message.id
            if message.key is not None and delivery.offset is not None:
                attributes[KAFKA_KEY] = message.key
        if delivery.partition is not None:
            attributes[PARTITION] = str(delivery.partition)
        if delivery.offset is not None:
            attributes[KAFKA_OFFSET] = delivery.offset
        _, header = self._start(
            f"process {delivery.stream}",
            SpanKind.CONSUMER,
            _context_of(headers.get(TRACEPARENT)),  # the publish span; else a new trace
            attributes,
        )
        if header is not None:
            headers[TRACEPARENT] = header
            self._delivering[key] = header
        return None

    def after_deliver(
        self,
        bridge: Actor,
        delivery: Any,
        payload: Any,
        headers: dict[str, str],
        error: BaseException | None,
    ) -> None:
        self._delivering.pop((id(bridge), delivery.entry_id), None)
        self._finish(headers.get(TRACEPARENT), error)

    def after_skip(self, bridge: Actor, delivery: Any, reason: SkipMessage) -> None:
        header = self._delivering.pop((id(bridge), delivery.entry_id), None)
        span = self._open.get(header) if header is not None else None
        if span is not None:
            span.set_attribute("troupe.skipped", str(reason))
        self._finish(header, None)

    # -- saga steps ----------------------------------------------------------------------------

    def before_saga_step(self, saga: str, run_id: str, step: str, action: str) -> None:
        parent = _parent()
        if parent is None:
            return
        span, header = self._start(
            f"saga {saga} {step} {action}",
            SpanKind.INTERNAL,
            parent,
            {
                "troupe.saga.name": saga,
                "troupe.saga.id": run_id,
                "troupe.saga.step": step,
                "troupe.saga.action": action,
            },
        )
        self._steps[(run_id, step, action)] = (span, current_traceparent.get())
        if header is not None:
            self._open.pop(header, None)  # ended by after_saga_step, not by a header
            current_traceparent.set(header)  # the step's ask is its child

    def after_saga_step(
        self, saga: str, run_id: str, step: str, action: str, error: BaseException | None
    ) -> None:
        found = self._steps.pop((run_id, step, action), None)
        if found is None:
            return
        span, previous = found
        current_traceparent.set(previous)
        _end(span, error)


def _system_of(bridge: Actor) -> str:
    broker = getattr(bridge, "broker", None)
    capabilities = getattr(broker, "capabilities", None)
    return str(getattr(capabilities, "name", "troupe"))


__all__ = ["OpenTelemetry"]
