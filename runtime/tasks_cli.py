"""``troupe tasks ...``: run task workers, inspect and manage task queues (JSON with --json).

    troupe tasks --broker redis://127.0.0.1:6379/0 worker myapp.tasks -Q critical=6,default=3
    troupe tasks --broker redis://127.0.0.1:6379/0 queues --json
    troupe tasks --broker redis://... dead default
    troupe tasks --broker redis://... requeue default TASK_ID
    troupe tasks --broker amqp://... --control redis://... pause low

``worker`` runs :func:`troupe.brokers.tasks.serve.worker_tree` in the
foreground; every other action goes through
:class:`troupe.brokers.tasks.Inspector` (or the client, for ``enqueue``). The
broker URL comes from ``--broker`` or the ``TROUPE_TASKS_BROKER`` environment
variable. Exit status: 0; 1 when the broker cannot be reached, a queue or task
does not exist, or the action cannot work (one line on stderr says why); 2 for
a mistake on the command line. Heavy imports happen in the handler, so building
the ``troupe`` parser stays fast.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from troupe.errors import ConfigError

logger = logging.getLogger(__name__)

ENV_BROKER = "TROUPE_TASKS_BROKER"
EXIT_FAILED = 1

_DEAD_ACTIONS = ("requeue", "delete")
#: Actions that need a control store every worker shares (RabbitMQ: --control).
_SHARED_CONTROL = ("pause", "resume", "cancel", "active")


class TasksCommandError(Exception):
    """The action cannot be done; the message is the one line printed."""


def add_tasks_command(subcommands: Any) -> None:
    """Add ``troupe tasks`` and its subcommands to the ``troupe`` parser."""
    tasks = subcommands.add_parser(
        "tasks",
        help="run task workers; inspect and manage task queues",
        description="Run the workers of troupe.brokers.tasks, and inspect and manage their "
        "queues on a broker.",
    )
    tasks.add_argument(
        "--broker",
        default=os.environ.get(ENV_BROKER),
        metavar="URL",
        help=f"redis://, amqp:// broker URL (default: ${ENV_BROKER})",
    )
    tasks.add_argument(
        "--control",
        default=None,
        metavar="REDIS_URL",
        help="Redis of the control store when the broker is RabbitMQ (locks, pauses, "
        "cancels, running tasks, results)",
    )
    tasks.add_argument("--json", action="store_true", help="print JSON (for scripts)")
    actions = tasks.add_subparsers(title="actions", dest="action", metavar="ACTION")
    actions.required = True
    _add_worker(actions)
    actions.add_parser("queues", help="per queue: size, in flight, scheduled, retrying, dead")
    for name, text in (
        ("pending", "tasks waiting in QUEUE to be fetched"),
        ("scheduled", "tasks waiting for their time (retries included)"),
        ("retrying", "scheduled retries of failed tasks"),
        ("dead", "dead-lettered tasks"),
        ("pause", "stop workers taking tasks from QUEUE"),
        ("resume", "let workers take tasks from QUEUE again"),
    ):
        action = actions.add_parser(name, help=text)
        action.add_argument("queue", metavar="QUEUE")
    active = actions.add_parser("active", help="tasks the workers run now")
    active.add_argument("queue", metavar="QUEUE", nargs="?", default=None)
    for name, text in (
        ("requeue", "put a dead task back on its queue, retries reset"),
        ("delete", "remove a dead task for good"),
    ):
        action = actions.add_parser(name, help=text)
        action.add_argument("queue", metavar="QUEUE")
        action.add_argument("task_id", metavar="TASK_ID")
    result = actions.add_parser("result", help="the stored result of a task (see --result-ttl)")
    result.add_argument("queue", metavar="QUEUE")
    result.add_argument("task", metavar="TASK", help="the task's type (name)")
    result.add_argument("task_id", metavar="TASK_ID")
    cancel = actions.add_parser("cancel", help="cancel a queued or running task by id")
    cancel.add_argument("task_id", metavar="TASK_ID")
    cancel.add_argument(
        "--force", action="store_true", help="record the cancellation even if no task has the id"
    )
    enqueue = actions.add_parser("enqueue", help="enqueue a task by name")
    enqueue.add_argument("task", metavar="TASK")
    enqueue.add_argument("--queue", default="default")
    enqueue.add_argument("--args", default="[]", help="JSON list of positional arguments")
    enqueue.add_argument("--kwargs", default="{}", help="JSON object of keyword arguments")
    enqueue.add_argument("--delay", type=float, default=None, metavar="SECONDS")
    enqueue.add_argument("--max-retries", type=int, default=None, metavar="N")
    enqueue.add_argument("--unique-for", type=float, default=None, metavar="SECONDS")
    enqueue.add_argument("--task-id", default=None)
    tasks.set_defaults(handler=tasks_command)


def _add_worker(actions: Any) -> None:
    worker = actions.add_parser(
        "worker",
        help="run the tasks of MODULE in supervised worker processes",
        description="Run a WorkerPool for the TaskRegistry of MODULE in --processes child "
        "processes under a process supervisor (restarted when they die); SIGTERM or Ctrl-C "
        "drains them: running tasks finish, unstarted ones go back to the broker.",
    )
    worker.add_argument(
        "module", metavar="MODULE", help="pkg.mod (its one TaskRegistry) or pkg.mod:attribute"
    )
    worker.add_argument(
        "--queues",
        "-Q",
        action="append",
        default=[],
        metavar="QUEUE[=WEIGHT],...",
        help="queues and weights (default: the registry's queues, weight 1)",
    )
    worker.add_argument("--strict", action="store_true", help="strict priority: heaviest first")
    worker.add_argument(
        "--concurrency", "-c", type=int, default=8, metavar="N", help="worker threads per process"
    )
    worker.add_argument("--processes", "-p", type=int, default=1, metavar="N")
    worker.add_argument(
        "--prefetch",
        type=int,
        default=None,
        metavar="N",
        help="messages fetched ahead per queue (default 8 x concurrency)",
    )
    worker.add_argument(
        "--result-ttl",
        type=float,
        default=None,
        metavar="SECONDS",
        help="keep task results that long (dramatiq's Results API reads them)",
    )
    worker.add_argument(
        "--shutdown-timeout",
        type=float,
        default=10.0,
        metavar="SECONDS",
        help="drain deadline of each process on stop",
    )
    worker.add_argument(
        "--log-level", type=str.upper, default="INFO", choices=["DEBUG", "INFO", "WARNING", "ERROR"]
    )


def tasks_command(args: argparse.Namespace) -> int:
    """Run one ``troupe tasks`` action; the exit status (see the module docstring)."""
    from troupe.brokers.tasks import broker_errors
    from troupe.errors import TroupeError

    if not args.broker:
        raise ConfigError("--broker", f"give a broker URL (or set {ENV_BROKER})")
    try:
        if args.action == "worker":
            return _worker(args)
        return _act(args)
    except ConfigError:
        raise  # troupe's main prints it in one line (exit 2)
    except (TasksCommandError, TroupeError) as exc:  # unknown queue or task, duplicate, ...
        return _fail(args, str(exc))
    except broker_errors() as exc:
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        return _fail(args, f"cannot reach the broker at {redact(args.broker)}: {reason}")


def _fail(args: argparse.Namespace, message: str) -> int:
    sys.stderr.write(f"troupe tasks {args.action}: error: {message}\n")
    return EXIT_FAILED


def redact(url: str) -> str:
    """``url`` with its password replaced by ``***``.

    >>> redact("amqp://guest:secret@localhost:5672/")
    'amqp://guest:***@localhost:5672/'
    """
    parts = urlsplit(url)
    if parts.password is None:
        return url
    netloc = parts.netloc.rsplit("@", 1)[1]
    user = parts.username or ""
    return urlunsplit(parts._replace(netloc=f"{user}:***@{netloc}"))


def _worker(args: argparse.Namespace) -> int:
    from troupe import run
    from troupe.brokers.tasks.serve import WorkerSettings, load_registry, parse_queues, worker_tree
    from troupe.supervisors.process_logging import configure_logging

    if os.getcwd() not in sys.path and "" not in sys.path:
        sys.path.insert(0, os.getcwd())
    load_registry(args.module)  # fails here, in one line, when MODULE is wrong
    settings = WorkerSettings(
        module=args.module,
        broker=args.broker,
        queues=parse_queues(args.queues),
        concurrency=args.concurrency,
        strict=args.strict,
        prefetch=args.prefetch,
        control=args.control,
        result_ttl=args.result_ttl,
        drain_timeout=args.shutdown_timeout,
    )
    tree = worker_tree(settings, processes=args.processes, log_level=args.log_level)
    configure_logging(args.log_level, "root")
    return run(tree.run())


def _act(args: argparse.Namespace) -> int:
    from troupe.brokers.tasks import (
        MISSING,
        Inspector,
        RedisControl,
        ResultFailure,
        TaskClient,
        open_broker,
        read_result,
        result_backend,
    )

    broker = open_broker(args.broker)
    control = RedisControl(args.control) if args.control else None
    try:
        inspector = Inspector(broker, control)
        action = args.action
        if action in _SHARED_CONTROL and not inspector.control.shared:
            raise TasksCommandError(
                f"{action} needs the control store the workers share, and a "
                f"{type(broker).__name__} has none of its own: give --control REDIS_URL "
                "(the one the workers use); nothing changed"
            )
        if action == "queues":
            return _out(args, [q.as_dict() for q in inspector.queues()])
        if action == "active":
            if args.queue is not None:
                inspector.require_queue(args.queue)
            return _out(args, [t.as_dict() for t in inspector.active(args.queue)])
        if action == "cancel":
            where = inspector.cancel(args.task_id, force=args.force)
            return _out(args, {"id": args.task_id, "cancelled": True, "was": where})
        if action == "enqueue":
            return _enqueue(args, TaskClient(broker, control=inspector.control))
        inspector.require_queue(args.queue)
        if action in ("pending", "scheduled", "retrying", "dead"):
            records = getattr(inspector, action)(args.queue)
            return _out(args, [r.as_dict() for r in records])
        if action in ("pause", "resume"):
            getattr(inspector, action)(args.queue)
            return _out(args, {"queue": args.queue, "paused": action == "pause"})
        if action == "result":
            backend = result_backend(broker, args.control)
            try:
                value = read_result(backend, args.queue, args.task, args.task_id)
            except ResultFailure as exc:
                raise TasksCommandError(f"task {args.task_id} failed: {exc}") from None
            if value is MISSING:
                raise TasksCommandError(
                    f"no result stored for {args.task} {args.task_id} on {args.queue!r} "
                    "(not finished, expired, or the workers keep none: --result-ttl)"
                )
            return _out(args, {"id": args.task_id, "result": value})
        method = inspector.requeue_dead if action == "requeue" else inspector.delete_dead
        if not method(args.queue, args.task_id):
            raise TasksCommandError(
                f"no dead task {args.task_id!r} in {args.queue!r}; nothing {action}d"
            )
        return _out(args, {"queue": args.queue, "id": args.task_id, action + "d": True})
    finally:
        broker.close()
        if control is not None:
            control.close()


def _enqueue(args: argparse.Namespace, client: Any) -> int:
    try:
        payload = json.loads(args.args)
        kwargs = json.loads(args.kwargs)
    except ValueError as exc:
        raise ConfigError("--args/--kwargs", f"not JSON: {exc}") from None
    if not isinstance(payload, list) or not isinstance(kwargs, dict):
        raise ConfigError("--args/--kwargs", "--args takes a JSON list, --kwargs a JSON object")
    info = client.enqueue(
        args.task,
        *payload,
        queue=args.queue,
        delay=args.delay,
        max_retries=args.max_retries,
        unique_for=args.unique_for,
        task_id=args.task_id,
        **kwargs,
    )
    return _out(args, {"id": info.id, "task": info.task, "queue": info.queue, "eta": info.eta})


def _out(args: argparse.Namespace, value: Any) -> int:
    if args.json:
        sys.stdout.write(json.dumps(value, sort_keys=True, default=str) + "\n")
        return 0
    rows = value if isinstance(value, list) else [value]
    for row in rows:
        sys.stdout.write("  ".join(f"{k}={v}" for k, v in row.items()) + "\n")
    if not rows:
        sys.stdout.write("(none)\n")
    return 0
