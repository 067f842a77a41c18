"""The ``troupe`` command line.

``troupe run package.module:tree`` runs a process tree in the foreground;
``troupe --version`` prints the version.

Adding a subcommand: write ``def add_NAME_command(subcommands)`` that calls
``subcommands.add_parser(...)``, adds its arguments and sets
``handler=<function(args) -> exit status>`` with ``set_defaults``, then list it
in :data:`COMMANDS`. Import heavy modules inside the handler, not at the top,
so ``troupe --version`` stays fast.
"""

from __future__ import annotations

import argparse
import logging
import math
import os
import sys
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any, TypeVar

from troupe import __version__
from troupe.errors import ConfigError

if TYPE_CHECKING:
    from troupe.backoff import Backoff
    from troupe.supervisors.process_hooks import ProcessHooks
    from troupe.supervisors.process_supervisor import ProcessSupervisor

logger = logging.getLogger(__name__)

ENV_BROKER = "TROUPE_BROKER"
"""The default of ``troupe run --broker``."""

Subcommands = Any  # argparse's private _SubParsersAction
EXIT_USAGE = 2


class CliError(Exception):
    """A mistake on the command line; the message says what to do."""


N = TypeVar("N", int, float)


def ranged(
    kind: Callable[[str], N], *, low: N | None = None, high: N | None = None
) -> Callable[[str], N]:
    """An argparse ``type``: parse with ``kind`` (int or float), check ``low <= value <= high``.

    >>> ranged(int, low=1)("3")
    3
    >>> ranged(float, low=0, high=1)("2")
    Traceback (most recent call last):
    argparse.ArgumentTypeError: must be between 0 and 1, got 2
    """
    noun = "a whole number" if kind is int else "a number"
    if low is not None and high is not None:
        bounds = f"between {low} and {high}"
    elif low is not None:
        bounds = "zero or more" if low == 0 else f"at least {low}"
    elif high is not None:
        bounds = f"at most {high}"
    else:
        bounds = "finite"

    def parse(text: str) -> N:
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"not {noun}: {text!r}") from None
        if (
            not math.isfinite(value)
            or (low is not None and value < low)
            or (high is not None and value > high)
        ):
            raise argparse.ArgumentTypeError(f"must be {bounds}, got {text}")
        return value

    parse.__name__ = kind.__name__  # argparse names the type in its messages
    return parse


SECONDS = ranged(float, low=0.0)
"""An argparse ``type`` for a duration: a finite number of seconds, zero or more."""


class HelpFormatter(argparse.ArgumentDefaultsHelpFormatter):
    """``--help`` shows each option's default (unless it has none, or is a plain switch)."""

    def _get_help_string(self, action: argparse.Action) -> str | None:
        if action.default is None or action.default is False:
            return action.help
        return super()._get_help_string(action)


def add_run_command(subcommands: Subcommands) -> None:
    """``troupe run TARGET``."""
    from troupe.supervisors.policy import RestartType, Strategy
    from troupe.supervisors.process_logging import LEVELS

    run = subcommands.add_parser(
        "run",
        formatter_class=HelpFormatter,
        help="run a process tree in the foreground",
        description=(
            "Run the tree named by TARGET in --processes child processes (or the "
            "ProcessSupervisor TARGET names), restart them when they die, and drain and "
            "stop them on SIGTERM or Ctrl-C. SIGUSR1 logs the tree."
        ),
    )
    run.add_argument(
        "target",
        metavar="TARGET",
        help="package.module:attribute naming a build(system) function, an Actor subclass, "
        "an actor supervisor spec, or a ProcessSupervisor",
    )
    run.add_argument(
        "--processes",
        "-p",
        type=ranged(int, low=1),
        default=None,
        metavar="N",
        help="how many processes run the tree (1 unless given)",
    )
    run.add_argument(
        "--metrics-port",
        type=ranged(int, low=0, high=65535),
        default=None,
        metavar="PORT",
        help="serve Prometheus /metrics for the whole tree on ADDR:PORT",
    )
    run.add_argument(
        "--metrics-addr",
        default="127.0.0.1",
        metavar="ADDR",
        help="address the /metrics endpoint binds to (127.0.0.1 is this machine only)",
    )
    run.add_argument(
        "--allow-actions",
        action="store_true",
        help="let the observer (beside /metrics) restart and stop actors, requeue or delete "
        "dead letters and dead tasks, retry parked sagas; needs the token from "
        "$TROUPE_OBSERVER_TOKEN (else a new one, written where `troupe top --pid` finds it)",
    )
    run.add_argument(
        "--log-level",
        type=str.upper,
        choices=LEVELS,
        default="INFO",
        help="log level of the root and every child",
    )
    run.add_argument(
        "--shutdown-timeout",
        type=SECONDS,
        default=10.0,
        metavar="SECONDS",
        help="drain deadline of each child on stop, before SIGKILL",
    )
    run.add_argument(
        "--restart",
        choices=[r.value for r in RestartType],
        default=RestartType.PERMANENT.value,
        help="when an ended process starts again",
    )
    run.add_argument(
        "--strategy",
        choices=[s.value for s in Strategy],
        default=Strategy.ONE_FOR_ONE.value,
        help="which processes restart when one dies",
    )
    run.add_argument(
        "--max-restarts",
        type=ranged(int, low=0),
        default=3,
        metavar="N",
        help="give up after more than N restarts within --within seconds",
    )
    run.add_argument(
        "--within",
        type=SECONDS,
        default=5.0,
        metavar="SECONDS",
        help="window of the restart limit",
    )
    run.add_argument(
        "--backoff",
        type=SECONDS,
        default=None,
        metavar="SECONDS",
        help="delay before the first restart, doubling up to 30 s (0.5 jittered unless given)",
    )
    cluster = run.add_argument_group(
        "cluster",
        "join trees started separately (on several hosts) into one logical system through a "
        "broker; see troupe.actors.cluster",
    )
    cluster.add_argument(
        "--broker",
        default=os.environ.get(ENV_BROKER) or None,
        metavar="URL",
        help=f"join the cluster on this broker (redis://, amqp://, kafka://; default "
        f"${ENV_BROKER})",
    )
    cluster.add_argument(
        "--cluster",
        default=None,
        metavar="NAME",
        help="the cluster's name: trees with the same broker and name form one system "
        "(troupe unless given)",
    )
    cluster.add_argument(
        "--export",
        action="append",
        default=[],
        metavar="NAME[=ACTOR]",
        help="serve the actor called ACTOR (default NAME) in each process under NAME to the "
        "cluster; repeatable",
    )
    cluster.add_argument(
        "--heartbeat",
        type=ranged(float, low=0.05),
        default=1.0,
        metavar="SECONDS",
        help="seconds between membership heartbeats; a process is gone after 3 missed",
    )
    run.set_defaults(handler=run_command)


def add_demo_command(subcommands: Subcommands) -> None:
    """``troupe demo``: the order-processing example under load and injected faults."""
    from troupe.examples.orders.demo import add_arguments, demo_command

    demo = subcommands.add_parser(
        "demo",
        formatter_class=HelpFormatter,
        help="run the order-processing example with injected faults",
        description=(
            "Run the order system (idempotent intake, event bus, saga with compensation, "
            "supervision tree) on the embedded broker, or on Redis with --broker redis://..., "
            "under a stream of orders with payment declines, inventory crashes and duplicate "
            "submissions; show progress, serve /metrics, print a summary."
        ),
    )
    add_arguments(demo)
    demo.set_defaults(handler=demo_command)


def add_top_command(subcommands: Subcommands) -> None:
    """``troupe top``: a running tree's observer in the terminal (see :mod:`troupe.top`)."""
    top = subcommands.add_parser(
        "top",
        formatter_class=HelpFormatter,
        help="watch a running tree in the terminal",
        description=(
            "Show a running tree (started with `troupe run --metrics-port`): actors with state, "
            "restarts, mailbox depth, messages/s and handler p99, bridges, task queues and "
            "sagas, refreshed every second. Keys: s sorts, / filters, q quits."
        ),
    )
    top.add_argument(
        "target",
        metavar="URL|PID",
        help="the tree's /metrics or /observer URL, or the pid of its `troupe run`",
    )
    top.add_argument(
        "--interval",
        type=ranged(float, low=0.2),
        default=1.0,
        metavar="SECONDS",
        help="seconds between refreshes",
    )
    top.set_defaults(handler=top_command)


def top_command(args: argparse.Namespace) -> int:
    """``troupe top``: run the terminal observer until q."""
    from troupe.top import TopError, observer_url, run_top

    try:
        url = observer_url(args.target)
    except TopError as exc:
        raise CliError(str(exc)) from None
    return run_top(url, interval=args.interval)


def add_tasks_command(subcommands: Subcommands) -> None:
    """``troupe tasks ...``: task queues (see :mod:`troupe.tasks_cli`)."""
    from troupe.tasks_cli import add_tasks_command as add

    add(subcommands)


def add_asyncapi_command(subcommands: Subcommands) -> None:
    """``troupe asyncapi TARGET``: the AsyncAPI 3 document of a build(system) function."""
    command = subcommands.add_parser(
        "asyncapi",
        formatter_class=HelpFormatter,
        help="write the AsyncAPI 3 document of a system's bridges",
        description=(
            "Start a system, call the build(system) function TARGET names, and write the "
            "AsyncAPI 3 document of the bridges it spawned (channels, typed message "
            "schemas, broker bindings) as JSON."
        ),
    )
    command.add_argument(
        "target", metavar="TARGET", help="package.module:attribute naming a build(system) function"
    )
    command.add_argument("--output", "-o", default="-", metavar="FILE", help="- is stdout")
    command.add_argument("--title", default=None, help="info.title (default: the system's name)")
    command.add_argument("--doc-version", default="1.0.0", help="info.version")
    command.set_defaults(handler=asyncapi_command)


def asyncapi_command(args: argparse.Namespace) -> int:
    """Build the system TARGET names, write its AsyncAPI document, stop it."""
    import asyncio
    import importlib
    import inspect

    from troupe import ActorSystem
    from troupe.brokers.asyncapi import to_json

    module_name, _, attribute = args.target.partition(":")
    try:
        build = getattr(importlib.import_module(module_name), attribute or "build")
    except (ImportError, AttributeError) as exc:
        raise CliError(f"{args.target}: cannot import it: {exc}") from None
    if not callable(build):
        raise CliError(f"{args.target} is not a build(system) function")

    async def render() -> bytes:
        async with ActorSystem(module_name.rsplit(".", 1)[-1], metrics=False) as system:
            made = build(system)
            if inspect.isawaitable(made):
                await made
            return to_json(system, title=args.title, version=args.doc_version)

    text = asyncio.run(render())
    if args.output == "-":
        sys.stdout.buffer.write(text + b"\n")
    else:
        with open(args.output, "wb") as out:
            out.write(text + b"\n")
    return 0


COMMANDS: list[Callable[[Subcommands], None]] = [
    add_run_command,
    add_demo_command,
    add_tasks_command,
    add_top_command,
    add_asyncapi_command,
]
"""Functions that add one subcommand each (see the module docstring)."""


def build_parser() -> argparse.ArgumentParser:
    """The ``troupe`` argument parser with every subcommand in :data:`COMMANDS`."""
    parser = argparse.ArgumentParser(
        prog="troupe",
        description="troupe: an actor runtime for event processing",
        formatter_class=HelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"troupe {__version__}")
    subcommands = parser.add_subparsers(title="commands", dest="command", metavar="COMMAND")
    for add in COMMANDS:
        add(subcommands)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; the process exit status."""
    parser = build_parser()
    args = parser.parse_args(argv)
    handler: Callable[[argparse.Namespace], int] | None = getattr(args, "handler", None)
    if handler is None:
        parser.print_help(sys.stderr)
        return EXIT_USAGE
    try:
        return handler(args)
    except (CliError, ConfigError) as exc:
        # one line that says what to fix, no traceback (a ConfigError names the setting)
        sys.stderr.write(f"troupe {args.command}: error: {exc}\n")
        return EXIT_USAGE
    except KeyboardInterrupt:
        return 130


def run_command(args: argparse.Namespace) -> int:
    """``troupe run``: build the tree, run it until it stops, return its exit status."""
    from troupe import run
    from troupe.supervisors.process_logging import configure_logging
    from troupe.supervisors.process_target import TargetError

    if os.getcwd() not in sys.path and "" not in sys.path:
        sys.path.insert(0, os.getcwd())
    try:
        tree = tree_for(args)
        configure_logging(args.log_level, "root")
        if args.allow_actions and args.metrics_port is None:
            raise CliError("--allow-actions needs --metrics-port (the observer is served there)")
        if args.metrics_port is not None:
            hooks = metrics_hooks(
                args.metrics_port, args.metrics_addr, allow_actions=args.allow_actions
            )
            tree.hooks.extend(hooks)
        cluster = cluster_hooks(args)
        if cluster is not None:
            tree.hooks.append(cluster)
        return run(tree.run())
    except TargetError as exc:  # TARGET, or a ProcessSpec of its tree (checked at start)
        raise CliError(str(exc)) from None


def tree_for(args: argparse.Namespace) -> ProcessSupervisor:
    """The ProcessSupervisor that ``troupe run`` runs for these arguments."""
    from troupe.supervisors.process_spec import ProcessSpec
    from troupe.supervisors.process_supervisor import ProcessSupervisor
    from troupe.supervisors.process_target import classify, load

    obj = load(args.target)
    if isinstance(obj, ProcessSupervisor):
        if args.processes is not None:
            raise CliError(
                f"{args.target} is a ProcessSupervisor, which sets its own process counts; "
                "drop --processes or change count= in its ProcessSpecs"
            )
        if args.backoff is not None:
            raise CliError(f"{args.target} is a ProcessSupervisor; set its backoff= instead")
        obj.log_level = args.log_level
        return obj
    classify(obj, args.target)
    try:
        spec = ProcessSpec(
            args.target,
            count=args.processes or 1,
            restart=args.restart,
            shutdown=args.shutdown_timeout,
        )
        return ProcessSupervisor(
            [spec],
            strategy=args.strategy,
            max_restarts=args.max_restarts,
            within=args.within,
            backoff=_backoff(args.backoff),
            name=args.target,
            log_level=args.log_level,
        )
    except ConfigError as exc:
        raise CliError(str(exc)) from None


def cluster_hooks(args: argparse.Namespace) -> ProcessHooks | None:
    """The hooks that put the tree in a cluster (``--broker``), or None; checks the
    settings and that the broker answers before any child starts."""
    if args.broker is None:
        for flag, value in (("--cluster", args.cluster), ("--export", args.export)):
            if value:
                raise CliError(f"{flag} needs --broker URL (or ${ENV_BROKER})")
        return None
    from troupe.actors.cluster import DEFAULT_CLUSTER, ClusterHooks, ClusterSettings, parse_export

    def flagged(exc: ConfigError) -> ConfigError:
        flag = {"broker": "--broker", "cluster": "--cluster", "export": "--export"}
        return ConfigError(flag.get(exc.setting, exc.setting), exc.problem)

    try:
        settings = ClusterSettings(
            broker=args.broker,
            name=args.cluster or DEFAULT_CLUSTER,
            exports=tuple(parse_export(text) for text in args.export),
            heartbeat=args.heartbeat,
        )
    except ConfigError as exc:
        raise flagged(exc) from None
    _probe_broker(settings.broker)
    return ClusterHooks(settings)


def _probe_broker(url: str) -> None:
    """Connect to ``url`` once: a broker that does not answer fails the start, naming it."""
    import asyncio

    from troupe.brokers import BrokerError, connect
    from troupe.brokers.redaction import redact

    async def probe() -> None:
        broker = connect(url)
        try:
            async with asyncio.timeout(15):
                await broker.connect()
        finally:
            await broker.close()

    try:
        asyncio.run(probe())
    except (OSError, BrokerError, TimeoutError, ValueError) as exc:
        raise ConfigError(
            "--broker", f"cannot connect to {redact(url)}: {exc or type(exc).__name__}"
        ) from None


def metrics_hooks(
    port: int, addr: str = "127.0.0.1", *, allow_actions: bool = False
) -> list[ProcessHooks]:
    """Process hooks that serve the whole tree's ``/metrics`` on ``addr``:``port``, and the
    observer, ``/healthz`` and ``/readyz`` beside it.

    They come from :func:`troupe.supervisors.process_metrics.process_tree_hooks` and
    close the endpoint when the tree has stopped.
    """
    from troupe.supervisors.process_metrics import process_tree_hooks

    try:
        return process_tree_hooks(port, addr, allow_actions=allow_actions)
    except OSError as exc:
        raise CliError(
            f"--metrics-port {port}: cannot listen on {addr}:{port}: {exc.strerror or exc}"
        ) from None


def _backoff(initial: float | None) -> Backoff | None:
    from troupe.backoff import Backoff
    from troupe.supervisors.process_supervisor import DEFAULT_BACKOFF

    if initial is None:
        return None
    return Backoff(
        initial=initial,
        maximum=max(initial, DEFAULT_BACKOFF.maximum),
        jitter=DEFAULT_BACKOFF.jitter,
        reset_after=DEFAULT_BACKOFF.reset_after,
    )
