"""``troupe tasks worker MODULE``: real worker processes on Redis and RabbitMQ, started as a
subprocess, running enqueued tasks, and drained by SIGTERM."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from troupe.brokers.tasks import TaskClient, open_broker, queue_stats

HERE = Path(__file__).resolve().parent

pytestmark = pytest.mark.broker


def until(condition: Callable[[], bool], timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"not within {timeout} s"
        time.sleep(0.05)


@pytest.fixture(params=["redis", "rabbitmq"])
def url(request: pytest.FixtureRequest) -> str:
    return str(request.getfixturevalue(f"{request.param}_url"))


def test_worker_processes_run_tasks_and_drain_on_sigterm(url: str, tmp_path: Path) -> None:
    env = {**os.environ, "TASK_NOTES": str(tmp_path)}
    command = [
        sys.executable,
        "-m",
        "troupe",
        "tasks",
        "--broker",
        url,
        "worker",
        "worker_tasks",
        "-Q",
        "default=3,slow",
        "-c",
        "2",
        "-p",
        "2",
        "--shutdown-timeout",
        "20",
        "--log-level",
        "warning",
    ]
    root = subprocess.Popen(command, cwd=HERE, env=env, stderr=subprocess.PIPE, text=True)
    broker = open_broker(url)
    client = TaskClient(broker)
    try:
        for i in range(20):
            client.enqueue("quick", f"q{i}")
        until(lambda: len(list(tmp_path.glob("q*.done"))) == 20, 60)
        pids = {int(p.read_text()) for p in tmp_path.glob("q*.done")}
        assert root.pid not in pids  # run by the child processes
        client.enqueue("slow", "s", 2.0, queue="slow")
        until(lambda: (tmp_path / "s.start").exists(), 30)
        stopped_at = time.monotonic()
        root.send_signal(signal.SIGTERM)
        _, err = root.communicate(timeout=40)
        assert root.returncode == 0, err
        assert (tmp_path / "s.end").exists()  # the running task finished before the exit
        assert time.monotonic() - stopped_at < 30
        stats = {q.queue: q for q in queue_stats(broker)}
        assert stats["default"].size == 0 and stats["slow"].size == 0
        assert stats["default"].dead == 0 and stats["slow"].dead == 0
    finally:
        if root.poll() is None:
            root.kill()
            root.wait()
        broker.close()


def test_a_wrong_module_fails_in_one_line(redis_url: str) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "troupe", "tasks", "--broker", redis_url, "worker", "no_such_mod"],
        cwd=HERE,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 2
    assert done.stderr.strip().splitlines() == [
        "troupe tasks: error: invalid setting 'module': cannot import 'no_such_mod': "
        "ModuleNotFoundError: No module named 'no_such_mod'"
    ]
