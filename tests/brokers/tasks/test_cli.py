"""``troupe tasks ...`` on Redis and RabbitMQ: every action, JSON for scripts, and one line
(exit 1) for a broker it cannot reach, an unknown queue or task, or an action the broker
cannot do."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from dataclasses import dataclass

import pika
import pytest
import redis

from tests.helpers import eventually
from troupe import ActorSystem
from troupe.brokers.tasks import (
    Inspector,
    RedisControl,
    TaskClient,
    TaskRegistry,
    WorkerPool,
    open_broker,
)
from troupe.cli import main

pytestmark = pytest.mark.broker


@dataclass
class Target:
    """A broker URL and the options that go with it on the command line."""

    url: str
    control: str | None  # RabbitMQ: the Redis of the control store

    @property
    def options(self) -> list[str]:
        return ["--broker", self.url] + (["--control", self.control] if self.control else [])

    def control_store(self) -> RedisControl | None:
        return RedisControl(self.control) if self.control else None


@pytest.fixture(params=["redis", "rabbitmq"])
def target(request: pytest.FixtureRequest, redis_url: str) -> Iterator[Target]:
    if request.param == "redis":
        yield Target(redis_url, None)
    else:
        yield Target(request.getfixturevalue("rabbitmq_url"), redis_url)


def run(capsys: pytest.CaptureFixture[str], target: Target, *argv: str) -> tuple[int, object]:
    status = main(["tasks", *target.options, "--json", *argv])
    captured = capsys.readouterr()
    assert status == 0, captured.err
    return status, json.loads(captured.out)


def fails(capsys: pytest.CaptureFixture[str], options: list[str], *argv: str) -> str:
    """Run a command that must fail: exit 1, one line on stderr, nothing on stdout."""
    status = main(["tasks", *options, *argv])
    captured = capsys.readouterr()
    assert status == 1, (captured.out, captured.err)
    assert captured.out == ""
    lines = captured.err.strip().splitlines()
    assert len(lines) == 1, captured.err
    assert "Traceback" not in captured.err
    return lines[0]


async def test_tasks_cli_inspects_and_manages_queues(
    target: Target, capsys: pytest.CaptureFixture[str]
) -> None:
    _, info = run(capsys, target, "enqueue", "unknown_task", "--args", "[1, 2]")
    assert isinstance(info, dict) and info["queue"] == "default"
    task_id = info["id"]
    _, queues = run(capsys, target, "queues")
    assert queues == [
        {
            "queue": "default",
            "size": 1,
            "in_flight": 0,
            "pending": 1,
            "scheduled": 0,
            "retrying": 0,
            "dead": 0,
            "paused": False,
        }
    ]
    _, pending = run(capsys, target, "pending", "default")
    assert isinstance(pending, list) and [p["id"] for p in pending] == [task_id]
    # a pool whose registry does not know the task dead-letters it, as dramatiq does
    broker = open_broker(target.url)
    async with ActorSystem() as system:
        pool = WorkerPool(
            broker,
            TaskRegistry(),
            queues=["default"],
            concurrency=1,
            control=target.control_store(),
        )
        await pool.start(system)
        await eventually(lambda: Inspector(broker).queues(["default"])[0].dead == 1, 10)
        await pool.stop()
    _, dead = run(capsys, target, "dead", "default")
    assert isinstance(dead, list) and [d["id"] for d in dead] == [task_id]
    assert dead[0]["args"] == [1, 2] and "no task named 'unknown_task'" in dead[0]["error"]
    assert run(capsys, target, "requeue", "default", task_id)[1] == {
        "queue": "default",
        "id": task_id,
        "requeued": True,
    }
    line = fails(capsys, target.options, "delete", "default", task_id)  # no longer dead
    assert f"no dead task {task_id!r} in 'default'" in line
    assert run(capsys, target, "pause", "default")[1] == {"queue": "default", "paused": True}
    _, queues = run(capsys, target, "queues")
    assert isinstance(queues, list) and queues[0]["paused"] and queues[0]["size"] == 1
    run(capsys, target, "resume", "default")
    run(capsys, target, "enqueue", "later", "--delay", "60", "--kwargs", '{"x": 1}')
    _, scheduled = run(capsys, target, "scheduled", "default")
    assert isinstance(scheduled, list) and [s["task"] for s in scheduled] == ["later"]
    assert scheduled[0]["kwargs"] == {"x": 1} and scheduled[0]["eta"] is not None
    assert run(capsys, target, "retrying", "default")[1] == []
    assert run(capsys, target, "active")[1] == []
    later = scheduled[0]["id"]
    assert run(capsys, target, "cancel", later)[1] == {
        "id": later,
        "cancelled": True,
        "was": "queued",
    }
    line = fails(capsys, target.options, "cancel", "no-such-id")
    assert "no queued, scheduled or running task has id 'no-such-id'" in line
    control = target.control_store() or RedisControl(target.url)
    assert control.cancelled() == {later}  # the unknown id was not recorded
    control.close()
    broker.close()


def test_unreachable_brokers_fail_in_one_line(
    capsys: pytest.CaptureFixture[str], rabbitmq_url: str
) -> None:
    line = fails(capsys, ["--broker", "redis://127.0.0.1:1/0"], "queues")
    assert line.startswith("troupe tasks queues: error: cannot reach the broker at redis://")
    line = fails(capsys, ["--broker", "amqp://guest:guest@127.0.0.1:1/"], "queues")
    assert "cannot reach the broker at amqp://guest:***@127.0.0.1:1/" in line
    wrong_password = rabbitmq_url.replace("guest:guest@", "guest:nope@", 1)
    assert wrong_password != rabbitmq_url
    line = fails(capsys, ["--broker", wrong_password], "queues")
    assert "cannot reach the broker" in line and "nope" not in line
    fails(capsys, ["--broker", "redis://127.0.0.1:1/0"], "dead", "default")


def test_unknown_queues_and_rabbitmq_without_control_fail_and_change_nothing(
    target: Target, capsys: pytest.CaptureFixture[str]
) -> None:
    run(capsys, target, "enqueue", "t", "--queue", "low")
    for action in ("pause", "resume", "dead", "scheduled", "pending"):
        line = fails(capsys, target.options, action, "nosuchqueue")
        assert "no queue named 'nosuchqueue' on this broker (queues: low)" in line
    control = target.control_store() or RedisControl(target.url)
    assert control.paused() == set()
    control.close()
    if target.control is not None:  # RabbitMQ has no control store of its own
        bare = ["--broker", target.url]
        for argv in (["pause", "low"], ["cancel", "x"], ["active"]):
            line = fails(capsys, bare, *argv)
            assert "needs the control store the workers share" in line
            assert "--control REDIS_URL" in line


def test_malformed_messages_are_listed_as_malformed(
    target: Target, capsys: pytest.CaptureFixture[str]
) -> None:
    client = TaskClient(target.url)
    good = client.enqueue("t", 1)
    garbage = b"\xff not json"
    if target.control is None:  # Redis: dramatiq's list and hash
        r = redis.Redis.from_url(target.url)
        r.hset("dramatiq:default.msgs", "bad-1", garbage)
        r.rpush("dramatiq:default", "bad-1")
        r.close()
    else:
        connection = pika.BlockingConnection(pika.URLParameters(target.url))
        connection.channel().basic_publish("", "default", garbage)
        connection.close()
    _, pending = run(capsys, target, "pending", "default")
    assert isinstance(pending, list) and len(pending) == 2
    assert pending[0]["id"] == good.id and not pending[0]["malformed"]
    assert pending[1]["malformed"] and pending[1]["task"] == "?"
    assert "malformed message (10 bytes)" in pending[1]["error"]
    _, queues = run(capsys, target, "queues")
    assert isinstance(queues, list) and queues[0]["size"] == 2
    client.broker.close()


async def test_active_tasks_and_in_flight_counts(
    target: Target, capsys: pytest.CaptureFixture[str]
) -> None:
    tasks = TaskRegistry()
    release = asyncio.Event()

    @tasks.task
    async def hold(n: int) -> None:
        await release.wait()

    broker = open_broker(target.url)
    client = TaskClient(broker, tasks)
    ids = [client.enqueue(hold, n).id for n in range(5)]
    async with ActorSystem() as system:
        pool = WorkerPool(
            broker, tasks, concurrency=2, poll_interval=0.05, control=target.control_store()
        )
        await pool.start(system)

        async def two_running() -> bool:
            _, active = await asyncio.to_thread(run, capsys, target, "active", "default")
            return isinstance(active, list) and len(active) == 2

        await eventually(two_running, 15)
        _, active = await asyncio.to_thread(run, capsys, target, "active")
        assert isinstance(active, list) and {a["id"] for a in active} <= set(ids)
        assert all(a["worker"] == pool.worker_id for a in active)
        _, queues = await asyncio.to_thread(run, capsys, target, "queues")
        assert isinstance(queues, list)
        [default] = queues
        assert default["size"] + default["in_flight"] == 5 and default["in_flight"] >= 2
        release.set()
        await eventually(lambda: pool.stats.total("hold", "default", "done") == 5, 15)
        await pool.stop()
    broker.close()


def test_tasks_cli_without_a_broker_says_what_to_do(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("TROUPE_TASKS_BROKER", raising=False)
    assert main(["tasks", "queues"]) == 2
    assert "--broker" in capsys.readouterr().err
