"""``troupe demo``: the order system under a stream of orders and injected faults.

It places a seeded, realistic stream of orders (some customers cannot pay,
the desk runs out of stock), submits some orders twice (at once and later, as
retrying clients do), makes the inventory actor crash now and then, shows a
progress bar on stderr, serves ``/metrics`` while it runs, and prints what
happened: orders completed and compensated, restarts, dead letters,
duplicates suppressed — and whether stock and money still balance.
The exit status is 0 only when they do and every order settled.

    troupe demo                                   # embedded in-memory broker
    troupe demo --broker redis://127.0.0.1:6379/0 # events, saga log, idempotency on Redis
    troupe demo --broker kafka://127.0.0.1:9092   # the order events through Kafka topics
    troupe demo --broker amqp://guest:guest@127.0.0.1:5672/%2F  # events and tasks on RabbitMQ
    troupe demo --broker redis://127.0.0.1:6379/0 --split  # the saga steps in a second tree
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import math
import random
import sys
import tempfile
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import IO, TYPE_CHECKING, Any

from troupe.errors import ConfigError

if TYPE_CHECKING:
    from troupe.system import ActorSystem

    from .app import OrderApp
    from .events import CreateOrder

logger = logging.getLogger(__name__)

PRICES = {"book": 1500, "lamp": 4500, "mug": 900, "desk": 25000}
DEMO_STOCK = {"book": 2000, "lamp": 800, "mug": 3000, "desk": 260}


@dataclass
class DemoOptions:
    """Settings of one demo run (the command-line flags)."""

    orders: int = 600
    broker: str = "memory://"
    rate: float = 400.0  # orders per second; 0 = as fast as possible
    concurrency: int = 32
    duplicates: float = 0.1
    poor_customers: float = 0.15
    crash_every: int = 25
    seed: int = 7
    metrics_port: int | None = 0  # 0 = any free port; None = no endpoint
    progress: bool = True
    timeout: float = 120.0
    split: bool = False  # the saga steps in a second process tree (troupe.examples.orders.split)

    def __post_init__(self) -> None:
        """Every setting checked at once, with a ConfigError naming it."""
        from troupe.errors import check_timeout, require_int

        require_int("orders", self.orders, 1)
        require_int("concurrency", self.concurrency, 1)
        require_int("crash_every", self.crash_every, 0)
        for setting, low, high in (
            ("rate", 0.0, math.inf),
            ("duplicates", 0.0, 1.0),
            ("poor_customers", 0.0, 1.0),
        ):
            value = getattr(self, setting)
            if (
                isinstance(value, bool)
                or not isinstance(value, int | float)
                or not low <= value <= high
            ):
                bounds = "zero or more" if high == math.inf else f"from {low:g} to {high:g}"
                raise ConfigError(setting, f"must be a number {bounds}, got {value!r}")
        if self.metrics_port is not None:
            require_int("metrics_port", self.metrics_port, 0)
        check_timeout("timeout", self.timeout)
        if self.split and self.broker.startswith("memory:"):
            raise ConfigError(
                "split", "needs a broker both trees reach: --broker redis://, amqp:// or kafka://"
            )


@dataclass
class DemoResult:
    """What the run did; ``ok`` is the exit condition."""

    summary: dict[str, int]
    submissions: int
    unique: int
    inventory_balanced: bool
    money_balanced: bool
    settled: bool
    effects_once: bool
    seconds: float
    metrics_url: str | None = None
    outcomes: dict[str, int] = field(default_factory=dict)
    series: int | None = None  # samples /metrics exported at the end (None: no endpoint)

    @property
    def ok(self) -> bool:
        """Everything settled, balanced, and no effect happened twice."""
        return (
            self.settled
            and self.inventory_balanced
            and self.money_balanced
            and self.effects_once
            and self.summary["needs_attention"] == 0
        )


def make_orders(options: DemoOptions) -> tuple[list[CreateOrder], list[int], dict[str, int]]:
    """The order stream: orders, the submission order (indexes; duplicates repeat), balances."""
    from .events import CreateOrder

    rng = random.Random(options.seed)
    customers = [f"c{n:03d}" for n in range(40)]
    poor = set(rng.sample(customers, round(len(customers) * options.poor_customers)))
    balances = {c: (3000 if c in poor else 10_000_000) for c in customers}
    orders = []
    for n in range(options.orders):
        skus = rng.sample(sorted(PRICES), rng.choice((1, 1, 2, 3)))
        items = {sku: rng.choice((1, 1, 2)) for sku in skus}
        amount = sum(PRICES[sku] * qty for sku, qty in items.items())
        orders.append(CreateOrder(f"order-{n:05d}", rng.choice(customers), items, amount))
    schedule = list(range(len(orders)))
    for index in range(len(orders)):
        if rng.random() < options.duplicates:
            # a client retrying: right away (concurrent duplicate) or a little later
            later = min(len(schedule), schedule.index(index) + rng.choice((1, 1, 5, 40)))
            schedule.insert(later, index)
    return orders, schedule, balances


async def run_demo(options: DemoOptions, err: IO[str] | None = None) -> DemoResult:
    """Run the order system under the demo's load and faults; return what happened."""
    from troupe.system import ActorSystem

    from .app import OrderSettings, start_orders
    from .steps import Faults
    from .tasks import start_order_tasks

    err = err if err is not None else sys.stderr
    orders, schedule, balances = make_orders(options)
    redis = options.broker.startswith(("redis://", "rediss://"))
    kafka = options.broker.startswith("kafka://")
    namespace = f"troupe:demo:{uuid.uuid4().hex[:8]}:" if redis else "troupe:demo:"
    if kafka:  # topic names allow [A-Za-z0-9._-]; a fresh group and topic per run
        namespace = f"troupe-demo-{uuid.uuid4().hex[:8]}."
    settings = OrderSettings(
        broker_url=options.broker,
        namespace=namespace,
        stock=dict(DEMO_STOCK),
        balances=balances,
        faults=Faults(inventory_crash_every=options.crash_every),
    )
    if not options.broker.startswith("memory:"):  # fail fast, with the reason, when down
        from troupe.brokers import connect

        probe = connect(options.broker)
        try:
            await probe.connect()
        except ValueError as exc:  # a URL the client refuses (redis-py checks the port here)
            if isinstance(exc, ConfigError):
                raise
            raise ConfigError("--broker", f"{_redacted(options.broker)}: {exc}") from None
        finally:
            await probe.close()
    metrics_url: str | None = None
    began = time.monotonic()
    split = _SplitSteps(options) if options.split else None
    if split is not None:
        await split.start()
    async with ActorSystem(
        "troupe-demo", metrics_port=options.metrics_port, shutdown_timeout=5.0
    ) as system:
        if split is not None:
            settings.steps = await split.join(system, DEMO_STOCK, balances)
        app = await start_orders(system, settings)
        follow_up = await start_order_tasks(system, app.bus, options.broker, namespace)  # tasks
        try:
            metrics_url = _register_metrics(system, app)
            if metrics_url is not None:
                err.write(f"troupe demo: metrics at {metrics_url}\n")
            progress = _Progress(app, len(orders), err, options.progress)
            ticker = asyncio.create_task(progress.run())
            try:
                await _submit_all(app, orders, schedule, options)
                settled = await _settle(app, len(orders), options.timeout)
                completed = app.saga_stats.completed
                settled = await follow_up.settled(completed, options.timeout) and settled
            finally:
                ticker.cancel()
                await asyncio.gather(ticker, return_exceptions=True)
                progress.finish()
            summary = app.summary()
            summary.update({f"tasks_{k}": v for k, v in follow_up.summary().items()})
            series = _series(system)
            balanced = (app.inventory.balanced(), app.payments.balanced(), _effects_once(app))
            if split is not None:  # the ledgers live in the steps tree
                report = await split.report()
                summary["injected_crashes"] = report.injected_crashes
                summary["restarts"] += report.restarts
                balanced = (report.inventory_balanced, report.money_balanced, report.effects_once)
        finally:
            await system.shutdown()
            await app.close()
            if split is not None:
                await split.stop()
            if redis:
                await _drop_namespace(options.broker, namespace)
    return DemoResult(
        summary=summary,
        submissions=len(schedule),
        unique=len(orders),
        inventory_balanced=balanced[0],
        money_balanced=balanced[1],
        settled=settled,
        effects_once=balanced[2],
        seconds=time.monotonic() - began,
        metrics_url=metrics_url,
        series=series,
        outcomes=dict(app.outcomes),
    )


class _SplitSteps:
    """The steps tree of ``--split``: a ``troupe run`` of :mod:`troupe.examples.orders.split`
    in its own cluster on the demo's broker, and this process's place in that cluster."""

    def __init__(self, options: DemoOptions) -> None:
        self.options = options
        self.name = f"orders-{uuid.uuid4().hex[:8]}"  # a cluster of its own per run
        self.process: asyncio.subprocess.Process | None = None
        self.log = tempfile.TemporaryFile()  # noqa: SIM115  (closed in stop)
        self.ledgers: Any = None

    async def start(self) -> None:
        """Start ``troupe run ...split:steps --broker URL`` (it joins the cluster)."""
        from .split import LEDGERS

        self.process = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "troupe", "run", "troupe.examples.orders.split:steps",
            "--broker", self.options.broker, "--cluster", self.name,
            "--export", f"{self.name}.ledgers={LEDGERS}", "--log-level", "error",
            "--heartbeat", "0.5",
            stdin=asyncio.subprocess.DEVNULL, stdout=self.log, stderr=self.log,
        )  # fmt: skip

    async def join(
        self, system: ActorSystem, stock: dict[str, int], balances: dict[str, int]
    ) -> dict[str, Any]:
        """Join the cluster, set the steps up; remote refs to them by step name."""
        from troupe.actors import NoMembers
        from troupe.actors.cluster import ClusterSettings, join

        from .split import SetUp, step_names

        cluster = await join(system, ClusterSettings(self.options.broker, self.name, heartbeat=0.5))
        self.ledgers = cluster.remote(f"{self.name}.ledgers")
        set_up = SetUp(stock, balances, self.options.crash_every)
        deadline = time.monotonic() + 60.0
        while True:
            assert self.process is not None
            if self.process.returncode is not None:
                raise RuntimeError(
                    f"the steps tree exited with {self.process.returncode}: {self._tail()}"
                )
            try:
                await self.ledgers.ask(set_up, timeout=30.0)
                break
            except NoMembers:  # its tree is still starting
                if time.monotonic() > deadline:
                    raise RuntimeError(
                        f"the steps tree did not join in 60 s: {self._tail()}"
                    ) from None
                await asyncio.sleep(0.2)
        return {step: cluster.remote(name) for step, name in step_names(self.name).items()}

    async def report(self) -> Any:
        """The steps tree's :class:`~troupe.examples.orders.split.Report`."""
        from .split import GetReport

        return await self.ledgers.ask(GetReport(), timeout=30.0)

    async def stop(self) -> None:
        """Stop the steps tree (SIGTERM: it drains), then forget its log."""
        process = self.process
        if process is not None and process.returncode is None:
            process.terminate()
            try:
                await asyncio.wait_for(process.wait(), 30.0)
            except TimeoutError:
                process.kill()
                await process.wait()
        self.log.close()

    def _tail(self) -> str:
        self.log.seek(0)
        return self.log.read()[-2000:].decode(errors="replace") or "(no output)"


async def _submit_all(
    app: OrderApp, orders: list[CreateOrder], schedule: list[int], options: DemoOptions
) -> None:
    slots = asyncio.Semaphore(options.concurrency)
    interval = 1.0 / options.rate if options.rate > 0 else 0.0
    start = time.monotonic()

    async def submit(order: CreateOrder) -> None:
        try:
            for attempt in range(5):  # a client retries a failed submission
                try:
                    await app.submit(order)
                    return
                except Exception as exc:
                    logger.info("submitting %s failed (%s); retrying", order.order_id, exc)
                    await asyncio.sleep(0.05 * (attempt + 1))
        finally:
            slots.release()

    tasks = []
    for position, index in enumerate(schedule):
        if interval:
            delay = start + position * interval - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)
        await slots.acquire()
        tasks.append(asyncio.create_task(submit(orders[index])))
    await asyncio.gather(*tasks)


async def _settle(app: OrderApp, orders: int, timeout: float) -> bool:
    try:
        await app.settled(orders, timeout=timeout)
    except (TimeoutError, RuntimeError) as exc:
        logger.error("%s", exc)
        return False
    return True


def _effects_once(app: OrderApp) -> bool:
    histories = (app.inventory.history, app.payments.history, app.mailer.history)
    return all(len(h) == len(set(h)) for h in histories)


def _register_metrics(system: Any, app: OrderApp) -> str | None:
    """Export the bridge's broker counters and the saga counters; the endpoint's URL."""
    from troupe.metrics import watch_broker

    watch_broker(system, app.broker)  # the dashboard's broker row (troupe_broker_*)
    endpoint = getattr(system, "metrics_endpoint", None)
    if endpoint is None:
        return None
    from troupe.actors.saga_metrics import register_saga_metrics

    return register_saga_metrics(system, {"order": app.saga_stats})


def _series(system: ActorSystem) -> int | None:
    """How many samples (time series) the system's ``/metrics`` exports now."""
    endpoint = system.metrics_endpoint
    if endpoint is None:
        return None
    return sum(len(family.samples) for family in endpoint.server.registry.collect())


async def _drop_namespace(url: str, namespace: str) -> None:
    from redis.asyncio import Redis

    client = Redis.from_url(url)
    try:
        keys = [key async for key in client.scan_iter(match=f"{namespace}*")]
        if keys:
            await client.delete(*keys)
    finally:
        await client.aclose()


class _Progress:
    """A one-line progress bar on a terminal; a line per 10 % elsewhere."""

    def __init__(self, app: OrderApp, total: int, out: IO[str], enabled: bool) -> None:
        self.app = app
        self.total = total
        self.out = out
        self.enabled = enabled
        self.tty = out.isatty()
        self.reported = -1

    async def run(self) -> None:
        while True:
            self.draw()
            await asyncio.sleep(0.1)

    def draw(self) -> None:
        if not self.enabled:
            return
        done = self.app.finished()
        stats = self.app.saga_stats
        width = 30
        filled = width * done // max(self.total, 1)
        bar = "#" * filled + "." * (width - filled)
        line = (
            f"[{bar}] {done}/{self.total} orders  completed {stats.completed}  "
            f"compensated {stats.compensated}  restarts {self.app.system.restarts}"
        )
        if self.tty:
            self.out.write(f"\r{line}")
            self.out.flush()
            return
        decile = 10 * done // max(self.total, 1)
        if decile != self.reported:
            self.reported = decile
            self.out.write(line + "\n")
            self.out.flush()

    def finish(self) -> None:
        self.draw()
        if self.enabled and self.tty:
            self.out.write("\n")
            self.out.flush()


def render(result: DemoResult, options: DemoOptions) -> str:
    """The summary the command prints."""
    s = result.summary
    outcomes = result.outcomes
    declined = outcomes.get("compensated:payment", 0)
    no_stock = outcomes.get("compensated:inventory", 0)
    other = s["compensated"] - declined - no_stock
    extra = result.submissions - result.unique

    def yes(flag: bool) -> str:
        return "yes" if flag else "NO"

    rows = [
        (
            "orders submitted",
            f"{result.submissions}  ({result.unique} orders + {extra} duplicates)",
        ),
        ("orders completed", str(s["completed"])),
        (
            "orders compensated",
            f"{s['compensated']}  (payment declined {declined}, out of stock {no_stock}, "
            f"other {other})",
        ),
        ("needs attention", str(s["needs_attention"])),
        ("duplicates suppressed", str(s["duplicates_suppressed"])),
        (
            "actor restarts",
            f"{s['restarts']}  (injected inventory crashes {s['injected_crashes']})",
        ),
        ("step retries", str(s["step_retries"])),
        ("dead letters", str(s["dead_letters"])),
        (
            "tasks run",
            f"e-mail {s.get('tasks_email', 0)}  invoice {s.get('tasks_invoice', 0)}  "
            f"analytics {s.get('tasks_analytics', 0)}",
        ),
        ("metrics series", "-" if result.series is None else str(result.series)),
        ("inventory balanced", yes(result.inventory_balanced)),
        ("money balanced", yes(result.money_balanced)),
        ("each effect once", yes(result.effects_once)),
        ("all orders settled", yes(result.settled)),
    ]
    head = (
        f"troupe demo: {result.unique} orders on {_redacted(options.broker)} "
        f"in {result.seconds:.1f} s (seed {options.seed})"
    )
    body = "\n".join(f"  {name:<24}{value}" for name, value in rows)
    verdict = "OK" if result.ok else "FAILED: see the rows marked NO"
    return f"{head}\n{body}\n{verdict}\n"


def _redacted(url: str) -> str:
    from troupe.brokers.redaction import redact

    return redact(url)


# -- command line --------------------------------------------------------------------------


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The demo's flags (shared by ``troupe demo`` and :func:`main`); each checked on parse."""
    from troupe.cli import ranged

    defaults = DemoOptions()
    parser.add_argument(
        "--orders", type=ranged(int, low=1), default=defaults.orders, help="orders to place"
    )
    parser.add_argument(
        "--broker",
        default=defaults.broker,
        metavar="URL",
        help="memory:// (embedded), redis://host:port/db, amqp://user:pass@host:port/vhost or kafka://host:port",
    )
    parser.add_argument(
        "--rate",
        type=ranged(float, low=0.0),
        default=defaults.rate,
        help="orders per second (0 = as fast as possible)",
    )
    parser.add_argument("--seed", type=int, default=defaults.seed, help="random seed")
    parser.add_argument(
        "--crash-every",
        type=ranged(int, low=0),
        default=defaults.crash_every,
        metavar="N",
        help="the inventory actor crashes on every Nth call (0 = never)",
    )
    parser.add_argument(
        "--duplicates",
        type=ranged(float, low=0.0, high=1.0),
        default=defaults.duplicates,
        metavar="FRACTION",
        help="share of orders submitted twice",
    )
    parser.add_argument(
        "--metrics-port",
        type=ranged(int, low=-1, high=65535),
        default=0,
        metavar="PORT",
        help="serve /metrics on 127.0.0.1:PORT while running (0 = any free port, -1 = off)",
    )
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    parser.add_argument(
        "--split",
        action="store_true",
        help="run the saga steps and their ledgers in a second process tree (troupe run "
        "troupe.examples.orders.split:steps), reached through remote refs on --broker",
    )
    parser.add_argument(
        "--log-level",
        default="CRITICAL",
        type=str.upper,
        choices=["DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"],
        help="log level (CRITICAL hides the injected failures, which are expected)",
    )


def options_from(args: argparse.Namespace) -> DemoOptions:
    """DemoOptions from parsed flags."""
    from troupe.brokers import connect

    connect(args.broker)  # raises ConfigError (a ValueError) naming a bad URL; connects later
    return DemoOptions(
        orders=args.orders,
        broker=args.broker,
        rate=args.rate,
        seed=args.seed,
        crash_every=args.crash_every,
        duplicates=args.duplicates,
        metrics_port=None if args.metrics_port < 0 else args.metrics_port,
        progress=not args.no_progress,
        split=args.split,
    )


def demo_command(args: argparse.Namespace) -> int:
    """Run the demo from parsed flags; the exit status."""
    from troupe.brokers import BrokerError
    from troupe.loop import run

    logging.basicConfig(level=args.log_level, format="%(levelname)s %(name)s: %(message)s")
    try:
        options = options_from(args)
    except ValueError as exc:
        sys.stderr.write(f"troupe demo: error: {exc}\n")
        return 2
    try:
        result = run(run_demo(options))
    except ConfigError as exc:  # one line naming the setting, as the CLI prints one
        sys.stderr.write(f"troupe demo: error: {exc}\n")
        return 2
    except (ConnectionError, OSError, BrokerError) as exc:
        sys.stderr.write(f"troupe demo: error: cannot use {_redacted(options.broker)}: {exc}\n")
        return 1
    sys.stdout.write(render(result, options))
    return 0 if result.ok else 1


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m troupe.examples.orders.demo``: the same as ``troupe demo``."""
    from troupe.cli import HelpFormatter

    parser = argparse.ArgumentParser(
        prog="troupe demo", description=__doc__.split("\n\n")[0], formatter_class=HelpFormatter
    )
    add_arguments(parser)
    return demo_command(parser.parse_args(argv))


if __name__ == "__main__":
    raise SystemExit(main())
