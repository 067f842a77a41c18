"""``troupe tasks ...`` on Redis: JSON for scripts, every action."""

from __future__ import annotations

import json

import pytest

from tests.helpers import eventually
from troupe import ActorSystem
from troupe.brokers.tasks import Inspector, TaskRegistry, WorkerPool, open_broker
from troupe.cli import main

pytestmark = pytest.mark.broker


def run(capsys: pytest.CaptureFixture[str], url: str, *argv: str) -> tuple[int, object]:
    status = main(["tasks", "--broker", url, "--json", *argv])
    out = capsys.readouterr().out
    return status, json.loads(out)


async def test_tasks_cli_inspects_and_manages_queues(
    redis_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    status, info = run(capsys, redis_url, "enqueue", "unknown_task", "--args", "[1, 2]")
    assert status == 0 and isinstance(info, dict) and info["queue"] == "default"
    task_id = info["id"]
    status, queues = run(capsys, redis_url, "queues")
    assert queues == [
        {
            "queue": "default",
            "pending": 1,
            "scheduled": 0,
            "retrying": 0,
            "dead": 0,
            "paused": False,
        }
    ]
    # a pool whose registry does not know the task dead-letters it, as dramatiq does
    broker = open_broker(redis_url)
    async with ActorSystem() as system:
        pool = WorkerPool(broker, TaskRegistry(), queues=["default"], concurrency=1)
        await pool.start(system)
        await eventually(lambda: Inspector(broker).queues(["default"])[0].dead == 1, 10)
        await pool.stop()
    status, dead = run(capsys, redis_url, "dead", "default")
    assert isinstance(dead, list) and [d["id"] for d in dead] == [task_id]
    assert dead[0]["args"] == [1, 2] and "no task named 'unknown_task'" in dead[0]["error"]
    assert run(capsys, redis_url, "requeue", "default", task_id) == (
        0,
        {"queue": "default", "id": task_id, "requeued": True},
    )
    assert run(capsys, redis_url, "delete", "default", task_id)[0] == 1  # no longer dead
    assert run(capsys, redis_url, "pause", "default") == (0, {"queue": "default", "paused": True})
    status, queues = run(capsys, redis_url, "queues")
    assert queues == [
        {"queue": "default", "pending": 1, "scheduled": 0, "retrying": 0, "dead": 0, "paused": True}
    ]
    run(capsys, redis_url, "resume", "default")
    run(capsys, redis_url, "enqueue", "later", "--delay", "60", "--kwargs", '{"x": 1}')
    status, scheduled = run(capsys, redis_url, "scheduled", "default")
    assert isinstance(scheduled, list) and [s["task"] for s in scheduled] == ["later"]
    assert scheduled[0]["kwargs"] == {"x": 1} and scheduled[0]["eta"] is not None
    assert run(capsys, redis_url, "retrying", "default") == (0, [])
    assert run(capsys, redis_url, "cancel", "abc") == (0, {"id": "abc", "cancelled": True})
    broker.close()


def test_tasks_cli_without_a_broker_says_what_to_do(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("TROUPE_TASKS_BROKER", raising=False)
    assert main(["tasks", "queues"]) == 2
    assert "--broker" in capsys.readouterr().err
