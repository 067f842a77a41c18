"""OpenTelemetry spans (troupe.otel), checked with the SDK's in-memory exporter: one trace
from an HTTP request served by a real ASGI app under uvicorn, through a producer bridge,
Redis, a consumer bridge, an actor and a saga, each span with the right parent; and a
trace that crosses into a consumer in another process."""

from __future__ import annotations

import asyncio
import json
import os
import socket
import sys
from pathlib import Path
from typing import Any

import httpx
import pytest
import uvicorn
from opentelemetry.instrumentation.asgi import OpenTelemetryMiddleware
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, StatusCode
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from tests.helpers import eventually
from troupe import Actor, ActorSystem
from troupe.actors.retry import Retry
from troupe.actors.saga import SagaDefinition, SagaOrchestrator, SagaStep, StartSaga, Step
from troupe.actors.saga_log import MemorySagaLog
from troupe.brokers import ConsumerBridge, ProducerBridge, Publish, connect
from troupe.otel import OpenTelemetry
from troupe.tracing import use_spans

FAST = Retry(max_attempts=2, initial=0.001, maximum=0.01)
HERE = Path(__file__).resolve().parent


@pytest.fixture
def exporter() -> Any:
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    yield exporter, provider
    use_spans(None)  # back to troupe's own ids for the other tests of this process


class Stock(SagaStep):
    """A saga step that makes a span of its own (it must nest under troupe's)."""

    def __init__(self, name: str, provider: TracerProvider) -> None:
        self.step_name = name
        self.tracer = provider.get_tracer("shop")

    def action(self, saga_id: str, data: dict[str, Any]) -> dict[str, Any]:
        with self.tracer.start_as_current_span(f"work {self.step_name}"):
            return {self.step_name: "done"}


class Orders(Actor):
    """The consumer bridge's target: starts the order's saga."""

    async def receive(self, order: dict[str, Any]) -> None:
        orchestrator = self.system.find("sagas")
        assert orchestrator is not None
        await orchestrator.ask(StartSaga(order["id"], order))


class Done(Actor):
    def __init__(self, finished: list[Any]) -> None:
        self.finished = finished

    def receive(self, message: Any) -> None:
        self.finished.append(message)


def web_app(system: ActorSystem, provider: TracerProvider) -> Any:
    async def create(request: Request) -> JSONResponse:
        producer = system.find("producer")
        assert producer is not None
        message_id = await producer.ask(Publish(await request.json()))
        return JSONResponse({"message_id": message_id}, status_code=202)

    app = Starlette(routes=[Route("/orders", create, methods=["POST"])])
    return OpenTelemetryMiddleware(app, tracer_provider=provider)


async def test_one_trace_from_http_through_redis_to_a_saga(redis_url: str, exporter: Any) -> None:
    spans_out, provider = exporter
    finished: list[Any] = []
    broker = connect(redis_url)
    await broker.connect()
    definition = SagaDefinition(
        "order", tuple(Step(n, f"step-{n}", retry=FAST) for n in ("reserve", "charge"))
    )
    otel = OpenTelemetry(tracer_provider=provider)
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    try:
        async with ActorSystem(tracing=True, middleware=[otel]) as system:
            for name in ("reserve", "charge"):
                system.spawn(Stock, name, provider, name=f"step-{name}")
            system.spawn(
                SagaOrchestrator,
                definition,
                MemorySagaLog(),
                listener=system.spawn(Done, finished),
                name="sagas",
            )
            system.spawn(Orders, name="orders")
            system.spawn(ProducerBridge, broker, "orders", name="producer")
            system.spawn(ConsumerBridge, broker, "orders", "g", "orders", block=0.05)
            config = uvicorn.Config(web_app(system, provider), log_level="warning", lifespan="off")
            server = uvicorn.Server(config)
            serving = asyncio.get_running_loop().create_task(server.serve(sockets=[sock]))
            async with httpx.AsyncClient() as client:
                await eventually(lambda: server.started)
                response = await client.post(f"http://127.0.0.1:{port}/orders", json={"id": "o1"})
            assert response.status_code == 202
            await eventually(lambda: len(finished) == 1)
            server.should_exit = True
            await serving
    finally:
        await broker.close()
        sock.close()

    spans = list(spans_out.get_finished_spans())
    by_name: dict[str, ReadableSpan] = {}
    for span in spans:
        by_name.setdefault(span.name, span)
    [server_span] = [s for s in spans if s.kind is SpanKind.SERVER]
    trace_id = server_span.context.trace_id
    troupe_spans = [s for s in spans if s.instrumentation_scope.name in ("troupe", "shop")]
    assert {s.context.trace_id for s in troupe_spans} == {trace_id}  # one trace

    def parent_of(name: str) -> ReadableSpan:
        span = by_name[name]
        assert span.parent is not None, name
        [parent] = [s for s in spans if s.context.span_id == span.parent.span_id]
        return parent

    assert parent_of("ask producer") is server_span
    publish = by_name["publish orders"]
    assert parent_of("publish orders") is by_name["ask producer"]
    assert publish.kind is SpanKind.PRODUCER
    assert publish.attributes["messaging.system"] == "redis"
    assert publish.attributes["messaging.destination.name"] == "orders"
    assert publish.attributes["messaging.operation.type"] == "send"
    message_id = publish.attributes["messaging.message.id"]
    assert message_id == response.json()["message_id"]

    process = by_name["process orders"]
    assert parent_of("process orders") is publish  # across the broker
    assert process.kind is SpanKind.CONSUMER
    assert process.attributes["messaging.operation.type"] == "process"
    assert process.attributes["messaging.consumer.group.name"] == "g"
    assert process.attributes["messaging.message.id"] == message_id
    assert process.status.status_code is not StatusCode.ERROR

    assert parent_of("ask sagas") is process
    for step in ("reserve", "charge"):
        saga_step = by_name[f"saga order {step} action"]
        assert parent_of(f"saga order {step} action") is by_name["ask sagas"]
        assert saga_step.attributes["troupe.saga.id"] == "o1"
        assert parent_of(f"ask step-{step}") is saga_step
        assert parent_of(f"work {step}") is by_name[f"ask step-{step}"]  # the user's span
    # every troupe span ended inside its parent's trace, none left open
    assert not otel._open and not otel._delivering and not otel._steps


async def test_a_failed_handler_marks_its_process_span(exporter: Any) -> None:
    spans_out, provider = exporter

    class Refuse(Actor):
        def receive(self, message: Any) -> None:
            raise ValueError("no thanks")

    broker = connect("memory://")
    otel = OpenTelemetry(tracer_provider=provider)
    async with ActorSystem(middleware=[otel]) as system:
        system.spawn(Refuse, name="refuse")
        system.spawn(ConsumerBridge, broker, "s", "g", "refuse", max_deliveries=1, block=0.05)
        producer = system.spawn(ProducerBridge, broker, "s")
        await producer.ask(Publish({"n": 1}))
        await eventually(lambda: len(spans_out.get_finished_spans()) >= 2)
        await eventually(lambda: broker.dead_letters("s"))
    spans = {s.name: s for s in spans_out.get_finished_spans()}
    process, publish = spans["process s"], spans["publish s"]
    assert publish.parent is None  # published from outside any trace: a new one
    assert process.parent is not None and process.parent.span_id == publish.context.span_id
    assert process.status.status_code is StatusCode.ERROR
    assert "no thanks" in (process.status.description or "")
    assert process.attributes["messaging.system"] == "memory"
    assert "ask refuse" not in spans  # nothing asked


async def test_asks_outside_any_trace_make_no_span(exporter: Any) -> None:
    spans_out, provider = exporter

    class Echo(Actor):
        def receive(self, message: Any) -> Any:
            return message

    async with ActorSystem(middleware=[OpenTelemetry(tracer_provider=provider)]) as system:
        echo = system.spawn(Echo, name="echo")
        assert await echo.ask(1) == 1
        tracer = provider.get_tracer("test")
        with tracer.start_as_current_span("outer") as outer:
            assert await echo.ask(2) == 2
    spans = {s.name: s for s in spans_out.get_finished_spans()}
    assert set(spans) == {"outer", "ask echo"}
    assert spans["ask echo"].parent.span_id == outer.get_span_context().span_id


async def test_the_trace_crosses_into_a_consumer_process(
    redis_url: str, exporter: Any, tmp_path: Path
) -> None:
    spans_out, provider = exporter
    out = tmp_path / "spans.jsonl"
    consumer = await asyncio.create_subprocess_exec(
        sys.executable, str(HERE / "otel_consumer.py"), redis_url, "cross", str(out),
        env={**os.environ, "PYTHONPATH": str(HERE.parents[1])},
    )  # fmt: skip
    broker = connect(redis_url)
    await broker.connect()
    try:
        async with ActorSystem(middleware=[OpenTelemetry(tracer_provider=provider)]) as system:
            producer = system.spawn(ProducerBridge, broker, "cross", name="producer")
            with provider.get_tracer("web").start_as_current_span("POST /orders"):
                await producer.ask(Publish({"order": 1}))
        assert await asyncio.wait_for(consumer.wait(), 90) == 0
    finally:
        if consumer.returncode is None:
            consumer.kill()
        await broker.close()
    publish = next(s for s in spans_out.get_finished_spans() if s.name == "publish cross")
    theirs = {r["name"]: r for r in map(json.loads, out.read_text().splitlines())}
    process, handle = theirs["process cross"], theirs["handle order"]
    assert process["trace"] == publish.context.trace_id  # one trace, two processes
    assert process["parent"] == publish.context.span_id
    assert handle["parent"] == process["id"]
