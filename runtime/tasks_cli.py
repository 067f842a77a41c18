"""``troupe tasks ...``: inspect and manage task queues from the shell (JSON with --json).

    troupe tasks --broker redis://127.0.0.1:6379/0 queues --json
    troupe tasks --broker redis://... dead default
    troupe tasks --broker redis://... requeue default TASK_ID
    troupe tasks --broker redis://... pause low

Every subcommand goes through :class:`troupe.brokers.tasks.Inspector` (or the
client, for ``enqueue``). The broker URL comes from ``--broker`` or the
``TROUPE_TASKS_BROKER`` environment variable. Exit status: 0, or 1 when the
task to requeue or delete was not found. Heavy imports happen in the handler,
so building the ``troupe`` parser stays fast.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from typing import Any

from troupe.errors import ConfigError

logger = logging.getLogger(__name__)

ENV_BROKER = "TROUPE_TASKS_BROKER"

_QUEUE_ACTIONS = ("scheduled", "retrying", "dead", "pause", "resume")
_DEAD_ACTIONS = ("requeue", "delete")


def add_tasks_command(subcommands: Any) -> None:
    """Add ``troupe tasks`` and its subcommands to the ``troupe`` parser."""
    tasks = subcommands.add_parser(
        "tasks",
        help="inspect and manage task queues (sizes, scheduled, retrying, dead; pause, cancel)",
        description="Inspect and manage the task queues of troupe.brokers.tasks on a broker.",
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
        help="Redis of the control store when the broker is RabbitMQ (locks, pauses, cancels)",
    )
    tasks.add_argument("--json", action="store_true", help="print JSON (for scripts)")
    actions = tasks.add_subparsers(title="actions", dest="action", metavar="ACTION")
    actions.required = True
    actions.add_parser("queues", help="sizes of every queue")
    for name, text in (
        ("scheduled", "tasks waiting for their time (retries included)"),
        ("retrying", "scheduled retries of failed tasks"),
        ("dead", "dead-lettered tasks"),
        ("pause", "stop workers taking tasks from QUEUE"),
        ("resume", "let workers take tasks from QUEUE again"),
    ):
        action = actions.add_parser(name, help=text)
        action.add_argument("queue", metavar="QUEUE")
    for name, text in (
        ("requeue", "put a dead task back on its queue, retries reset"),
        ("delete", "remove a dead task for good"),
    ):
        action = actions.add_parser(name, help=text)
        action.add_argument("queue", metavar="QUEUE")
        action.add_argument("task_id", metavar="TASK_ID")
    cancel = actions.add_parser("cancel", help="cancel a queued or running task by id")
    cancel.add_argument("task_id", metavar="TASK_ID")
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


def tasks_command(args: argparse.Namespace) -> int:
    """Run one ``troupe tasks`` action; the exit status."""
    from troupe.brokers.tasks import Inspector, RedisControl, TaskClient, open_broker

    if not args.broker:
        raise ConfigError("--broker", f"give a broker URL (or set {ENV_BROKER})")
    broker = open_broker(args.broker)
    control = RedisControl(args.control) if args.control else None
    try:
        inspector = Inspector(broker, control)
        action = args.action
        if action == "queues":
            return _out(args, [q.as_dict() for q in inspector.queues()])
        if action in ("scheduled", "retrying", "dead"):
            records = getattr(inspector, action)(args.queue)
            return _out(args, [r.as_dict() for r in records])
        if action in ("pause", "resume"):
            getattr(inspector, action)(args.queue)
            return _out(args, {"queue": args.queue, "paused": action == "pause"})
        if action in _DEAD_ACTIONS:
            method = inspector.requeue_dead if action == "requeue" else inspector.delete_dead
            found = method(args.queue, args.task_id)
            _out(args, {"queue": args.queue, "id": args.task_id, action + "d": found})
            return 0 if found else 1
        if action == "cancel":
            inspector.cancel(args.task_id)
            return _out(args, {"id": args.task_id, "cancelled": True})
        client = TaskClient(broker, control=inspector.control)
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
    finally:
        broker.close()


def _out(args: argparse.Namespace, value: Any) -> int:
    if args.json:
        sys.stdout.write(json.dumps(value, sort_keys=True) + "\n")
        return 0
    rows = value if isinstance(value, list) else [value]
    for row in rows:
        sys.stdout.write("  ".join(f"{k}={v}" for k, v in row.items()) + "\n")
    if not rows:
        sys.stdout.write("(none)\n")
    return 0
