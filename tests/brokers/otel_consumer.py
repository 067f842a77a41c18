"""A consumer process for tests/brokers/test_otel.py: consumes one message from Redis with
the OpenTelemetry middleware and writes its finished spans as JSON lines to argv[3].

    python otel_consumer.py REDIS_URL STREAM OUT
"""

from __future__ import annotations

import asyncio
import json
import sys
from typing import Any

from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from troupe import Actor, ActorSystem
from troupe.brokers import ConsumerBridge, connect
from troupe.otel import OpenTelemetry


async def main(url: str, stream: str) -> list[dict[str, Any]]:
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    done = asyncio.Event()

    class Handle(Actor):
        def receive(self, message: Any) -> None:
            with provider.get_tracer("worker").start_as_current_span("handle order"):
                done.set()

    broker = connect(url)
    await broker.connect()
    async with ActorSystem(middleware=[OpenTelemetry(tracer_provider=provider)]) as system:
        system.spawn(Handle, name="handle")
        system.spawn(ConsumerBridge, broker, stream, "g", "handle", block=0.05)
        await asyncio.wait_for(done.wait(), 60)
    await broker.close()  # the system drained first: the process span has ended
    return [
        {
            "name": span.name,
            "trace": span.context.trace_id,
            "id": span.context.span_id,
            "parent": span.parent.span_id if span.parent is not None else None,
        }
        for span in exporter.get_finished_spans()
    ]


if __name__ == "__main__":
    url, stream, out = sys.argv[1:4]
    spans = asyncio.run(main(url, stream))
    with open(out, "w") as f:
        f.writelines(json.dumps(record) + "\n" for record in spans)
