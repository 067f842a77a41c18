"""What the ecosystem features cost: typed decoding (msgspec, Pydantic, plain JSON) and
OpenTelemetry (the extra installed but off, on).

Questions:

- ``decode``: decodes per second of one ~230-byte order body: ``json.loads`` into a
  dict (what an untyped bridge does), into a msgspec Struct, a Pydantic model, and a
  dataclass through ``troupe.brokers.typed`` (msgspec when installed);
- ``consume_typed``: a backlog of messages through a ConsumerBridge on the in-memory
  broker into an actor, all acked, decoded as a dict, a msgspec Struct or a Pydantic
  model (the rest of the bridge's work included);
- ``tell_otel``: ``benchmarks/actors.py``'s tell (1 sender -> 1 actor) in fresh
  processes: OpenTelemetry not importable, the extra installed and imported but no
  middleware (tracing off), the ``troupe.otel`` middleware installed and the messages
  untraced, and every message carrying a ``traceparent`` without (``traced_off``) and
  with the middleware (``on_traced``: the OpenTelemetry context is set around each
  handler; a tell makes no span).

Every side runs once to warm up, then the sides take turns; each keeps its best round.

    python benchmarks/ecosystem.py --quick --json benchmarks/results/ecosystem.json
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import msgspec
import pydantic

sys.path.insert(0, str(Path(__file__).resolve().parent))

ORDER = {
    "id": "order-000123",
    "customer": "customer-42",
    "currency": "EUR",
    "express": False,
    "total": 129.5,
    "items": [
        {"sku": "sku-1", "qty": 2, "price": 19.99},
        {"sku": "sku-2", "qty": 1, "price": 59.5},
        {"sku": "sku-3", "qty": 3, "price": 10.0},
    ],
}
BODY = json.dumps(ORDER, separators=(",", ":")).encode()


def main() -> None:
    from _common import Report, parse_args

    rows = ("decode", "consume_typed", "tell_otel")
    args = parse_args(__doc__.splitlines()[0], rows)
    quick = args.quick
    repeat = args.repeat or (3 if quick else 5)
    report = Report("ecosystem")
    print(f"body: {len(BODY)} bytes; a warm-up round, then {repeat} interleaved rounds, best kept")
    if args.want("decode"):
        n = 50_000 if quick else 200_000
        decoders = make_decoders()
        rates = interleaved(repeat, {k: rate_of(n, decode_run, d, n) for k, d in decoders.items()})
        report.add("decode", "msg/s", rates.pop("json_dict"), rates)
    if args.want("consume_typed"):
        n = 20_000 if quick else 100_000
        kinds = ("json_dict", "msgspec_struct", "pydantic_model")
        rates = interleaved(repeat, {k: rate_of(n, consume_run, k, n) for k in kinds})
        report.add("consume_typed", "msg/s", rates.pop("json_dict"), rates)
    if args.want("tell_otel"):
        n = 100_000 if quick else 500_000
        modes = ("without_otel", "installed_off", "on_untraced", "traced_off", "on_traced")
        rates = interleaved(repeat, {m: probe_rate(n, "tell", m) for m in modes})
        report.add(
            "tell_otel",
            "msg/s",
            rates.pop("without_otel"),
            rates,
            measure="fresh process per run; troupe = OpenTelemetry not importable",
        )
    report.write(args.json)


def interleaved(repeat: int, sides: dict[str, Callable[[], float]]) -> dict[str, float]:
    best = dict.fromkeys(sides, 0.0)
    for round_ in range(repeat + 1):
        for name, measure in sides.items():
            rate = measure()
            if round_:
                best[name] = max(best[name], rate)
    return best


def rate_of(count: int, fn: Any, *args: Any) -> Callable[[], float]:
    def measure() -> float:
        result = fn(*args)
        seconds = asyncio.run(result) if asyncio.iscoroutine(result) else result
        return count / seconds

    return measure


# -- decoding ---------------------------------------------------------------------------


class ItemS(msgspec.Struct):
    sku: str
    qty: int
    price: float


class OrderS(msgspec.Struct):
    id: str
    customer: str
    currency: str
    express: bool
    total: float
    items: list[ItemS]


class ItemP(pydantic.BaseModel):
    sku: str
    qty: int
    price: float


class OrderP(pydantic.BaseModel):
    id: str
    customer: str
    currency: str
    express: bool
    total: float
    items: list[ItemP]


@dataclasses.dataclass
class ItemD:
    sku: str
    qty: int
    price: float


@dataclasses.dataclass
class OrderD:
    id: str
    customer: str
    currency: str
    express: bool
    total: float
    items: list[ItemD]


def order_types() -> dict[str, type]:
    return {"msgspec_struct": OrderS, "pydantic_model": OrderP, "dataclass": OrderD}


def make_decoders() -> dict[str, Callable[[bytes], Any]]:
    from troupe.brokers import JSON, typed

    types = order_types()
    return {"json_dict": JSON.loads, **{k: typed(t).loads for k, t in types.items()}}


def decode_run(decode: Callable[[bytes], Any], n: int) -> float:
    body = BODY
    start = time.perf_counter()
    for _ in range(n):
        decode(body)
    return time.perf_counter() - start


# -- through a consumer bridge ------------------------------------------------------------


async def consume_run(kind: str, n: int) -> float:
    from troupe import Actor, ActorSystem
    from troupe.brokers import ConsumerBridge, MemoryBroker

    message_type = None if kind == "json_dict" else order_types()[kind]
    loop = asyncio.get_running_loop()
    done: asyncio.Future[None] = loop.create_future()

    class Sink(Actor):
        def __init__(self) -> None:
            self.left = n

        def receive(self, message: Any) -> None:
            self.left -= 1
            if not self.left:
                done.set_result(None)

    broker = MemoryBroker()
    await broker.ensure_group("orders", "bench")
    for start in range(0, n, 100):
        count = min(100, n - start)
        await broker.publish_messages("orders", [broker.message(ORDER) for _ in range(count)])
    async with ActorSystem("bench") as system:
        started = time.perf_counter()
        sink = system.spawn(Sink)
        system.spawn(
            ConsumerBridge,
            broker,
            "orders",
            "bench",
            sink,
            consumer="c",
            message_type=message_type,
            block=0.05,
        )
        stats = broker.stats.consumer("orders", "bench", "c")
        await done
        while stats.acked < n:  # noqa: ASYNC110
            await asyncio.sleep(0.0005)
        return time.perf_counter() - started


# -- OpenTelemetry, in fresh processes ------------------------------------------------------


def probe_rate(n: int, what: str, mode: str) -> Callable[[], float]:
    def measure() -> float:
        out = subprocess.run(
            [sys.executable, __file__, "--probe", what, mode, str(n)],
            check=True,
            capture_output=True,
            text=True,
        ).stdout
        return n / float(out.strip().splitlines()[-1])

    return measure


def probe(what: str, mode: str, n: int) -> float:
    if mode == "without_otel":
        sys.modules["opentelemetry"] = None  # type: ignore[assignment]  # not importable
    else:
        import opentelemetry.sdk.trace
        import opentelemetry.trace  # noqa: F401
    from troupe import Actor, ActorSystem, Middleware

    class Counter(Actor):
        def __init__(self) -> None:
            self.count = 0

        def receive(self, message: Any) -> Any:
            self.count += 1
            return self.count

    middleware: list[Middleware] = []
    headers = None
    if mode in ("on_untraced", "on_traced"):
        from opentelemetry.sdk.trace import TracerProvider

        from troupe.otel import OpenTelemetry

        middleware.append(OpenTelemetry(tracer_provider=TracerProvider()))
    if mode in ("traced_off", "on_traced"):
        headers = {"traceparent": "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"}

    async def run() -> float:
        async with ActorSystem("bench", middleware=middleware) as system:
            ref = system.spawn(Counter)
            start = time.perf_counter()
            for i in range(n):
                await ref.tell(i, headers=headers)
            await ref.ask("flush")
            return time.perf_counter() - start

    return asyncio.run(run())


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "--probe":
        print(probe(sys.argv[2], sys.argv[3], int(sys.argv[4])))
    else:
        main()
