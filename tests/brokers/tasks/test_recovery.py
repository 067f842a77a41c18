"""Recovery on real servers: a worker process killed with SIGKILL (its tasks run again within
the stated bound, at least once, no other duplicates), graceful stops that always give
unstarted tasks back (a property over prefetch, concurrency and stop time), and messages
that do not decode (dead-lettered with their bytes and a reason; their neighbours run)."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import threading
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pika
import pytest
import redis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.helpers import eventually, wait_sync, written_lines
from troupe import ActorSystem
from troupe.brokers.tasks import Inspector, TaskClient, TaskRegistry, WorkerPool, open_broker
from troupe.brokers.tasks.consumers import REASON_HEADER
from troupe.brokers.tasks.redis_queues import RedisQueues

pytestmark = pytest.mark.broker

NODE = str(Path(__file__).with_name("task_node.py"))
#: The stated bounds (README): Redis requeues a dead pool's tasks within 1.2 x its
#: heartbeat_timeout (5 s); RabbitMQ as soon as the connection drops.
REDIS_BOUND = 1.2 * 5.0
RABBIT_BOUND = 1.0
SLACK = 3.0  # a loaded machine: fetch, start a process, log


@pytest.fixture(params=["redis", "rabbitmq"])
def server_url(request: pytest.FixtureRequest) -> str:
    url: str = request.getfixturevalue(f"{request.param}_url")
    return url


def waiting(url: str, queue: str = "default") -> int:
    """Messages ready on ``queue`` (not fetched by anyone)."""
    if url.startswith("redis"):
        client = redis.Redis.from_url(url)
        try:
            return int(client.llen(f"dramatiq:{queue}"))
        finally:
            client.close()
    connection = pika.BlockingConnection(pika.URLParameters(url))
    try:
        declared = connection.channel().queue_declare(queue, passive=True)
        return int(declared.method.message_count)
    finally:
        connection.close()


def unacked_on_redis(url: str) -> int:
    """Messages in any worker's unacked set."""
    client = redis.Redis.from_url(url)
    try:
        return sum(int(client.scard(k)) for k in client.scan_iter("dramatiq:__acks__.*"))
    finally:
        client.close()


class Node:
    """A worker process (task_node.py) and its log."""

    def __init__(self, url: str, log: Path, concurrency: int, prefetch: int, seconds: float):
        args = [NODE, url, str(log), str(concurrency), str(prefetch), str(seconds)]
        self.process = subprocess.Popen(
            [sys.executable, *args], stdout=subprocess.PIPE, text=True
        )
        assert self.process.stdout is not None
        assert self.process.stdout.readline().strip() == "ready"
        self.pid = self.process.pid

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
        self.process.wait(timeout=30)


def read_log(log: Path) -> list[tuple[str, int, int, float]]:
    """(event, pid, task, time) lines."""
    out = []
    for line in written_lines(log):
        event, pid, n, at = line.split()
        out.append((event, int(pid), int(n), float(at)))
    return out


@pytest.fixture
def nodes() -> Iterator[list[Node]]:
    started: list[Node] = []
    yield started
    for node in started:
        if node.process.poll() is None:
            node.process.kill()
            node.process.wait(timeout=10)


def test_a_killed_worker_s_tasks_run_again_within_the_bound(
    server_url: str, tmp_path: Path, nodes: list[Node]
) -> None:
    total = 200
    log = tmp_path / "log"
    client = TaskClient(open_broker(server_url))
    for n in range(total):
        client.enqueue("work", n)
    # A fetches all 200 (prefetch 200) and runs them two at a time
    a = Node(server_url, log, concurrency=2, prefetch=total, seconds=0.05)
    nodes.append(a)
    wait_sync(lambda: sum(1 for e in read_log(log) if e[0] == "done") >= 6, 30)
    wait_sync(lambda: waiting(server_url) == 0, 10)  # all in A's hands: 190+ in flight
    b = Node(server_url, log, concurrency=8, prefetch=64, seconds=0.05)
    nodes.append(b)
    a.process.kill()  # SIGKILL: no stop, no give-back, no ack
    killed = time.time()
    a.process.wait(timeout=10)
    done_by_a = {n for e, pid, n, _ in read_log(log) if e == "done" and pid == a.pid}
    assert len(done_by_a) < total - 100  # most were in flight

    def all_done() -> bool:
        return {n for e, _, n, _ in read_log(log) if e == "done"} == set(range(total))

    wait_sync(all_done, 60)
    entries = read_log(log)
    started_by_b = [(n, at) for e, pid, n, at in entries if e == "start" and pid == b.pid]
    started_by_a = {n for e, pid, n, _ in entries if e == "start" and pid == a.pid}
    bound = REDIS_BOUND if server_url.startswith("redis") else RABBIT_BOUND
    first = min(at for _, at in started_by_b) - killed
    last = max(at for e, pid, _, at in entries if e == "done" and pid == b.pid) - killed
    assert first <= bound + SLACK, (first, bound)
    assert last <= bound + SLACK + 5.0, (last, bound)  # 190 tasks of 50 ms, 8 at a time
    # at least once, no more: B runs each task once, and reruns only what A had started
    # and could not ack (at most its 2 workers' tasks)
    counts = Counter(n for n, _ in started_by_b)
    assert max(counts.values()) == 1
    again = set(counts) & started_by_a
    assert len(again) <= 2, again
    assert set(counts) | done_by_a == set(range(total))
    if server_url.startswith("redis"):
        wait_sync(lambda: unacked_on_redis(server_url) == 0, 10)  # A's set is gone too
    b.stop()
    assert b.process.returncode == 0


# -- graceful stop: unstarted tasks go back, always ------------------------------------------


async def _stop_with_prefetch(
    url: str, concurrency: int, prefetch: int, total: int, after: int, queues: int
) -> None:
    names = [f"q{uuid.uuid4().hex[:8]}" for _ in range(queues)]
    broker = open_broker(url)
    ran: list[int] = []
    lock = threading.Lock()
    tasks = TaskRegistry()
    for name in names:

        @tasks.task(queue=name, name=f"nap-{name}")
        def nap(i: int) -> None:
            time.sleep(0.005)
            with lock:
                ran.append(i)

    client = TaskClient(broker, tasks)
    for i in range(total):
        client.enqueue(f"nap-{names[i % queues]}", i)
    async with ActorSystem() as system:
        pool = WorkerPool(broker, tasks, queues=names, concurrency=concurrency, prefetch=prefetch)
        await pool.start(system)
        await eventually(lambda: len(ran) >= after, 20)
        await pool.stop()
    assert len(set(ran)) == len(ran)  # nothing ran twice
    if url.startswith("redis"):
        client_ = RedisQueues(broker).client
        for name in names:  # nothing left unacked by the stopped pool
            assert client_.scard(f"dramatiq:__acks__.{broker.broker_id}.{name}") == 0  # type: ignore[attr-defined]

    def back() -> bool:  # what did not run is back on its queue: no task lost
        return sum(waiting(url, name) for name in names) == total - len(ran)

    await eventually(back, 10, in_thread=True)
    broker.close()


@settings(
    max_examples=20,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(
    concurrency=st.integers(1, 4),
    prefetch=st.integers(1, 24),
    total=st.integers(1, 60),
    after=st.integers(0, 8),
    queues=st.integers(1, 2),
)
def test_a_graceful_stop_gives_every_unstarted_task_back(
    server_url: str, concurrency: int, prefetch: int, total: int, after: int, queues: int
) -> None:
    asyncio.run(
        _stop_with_prefetch(server_url, concurrency, prefetch, total, min(after, total), queues)
    )


def test_a_graceful_stop_gives_every_unstarted_task_back_in_a_loop(server_url: str) -> None:
    """The reported race: before the fix, 15 of 20 such stops stranded a task on Redis
    (fetched with a batch, left in dramatiq's consumer cache, never given back)."""
    for round_ in range(20):
        asyncio.run(_stop_with_prefetch(server_url, 4, 16, 60, 3 + round_ % 5, 2))


# -- messages that do not decode ---------------------------------------------------------------

GARBAGE = b"\xff\x00 not a dramatiq message {"


def _registry(ran: list[int]) -> TaskRegistry:
    tasks = TaskRegistry()

    @tasks.task
    def add(n: int) -> None:
        ran.append(n)

    return tasks


async def test_garbage_on_redis_is_dead_lettered_and_its_neighbours_run(redis_url: str) -> None:
    ran: list[int] = []
    tasks = _registry(ran)
    broker = open_broker(redis_url)
    client = TaskClient(broker, tasks)
    raw = redis.Redis.from_url(redis_url)
    for n in range(10):
        client.enqueue("add", n)
    raw.hset("dramatiq:default.msgs", "garbage-1", GARBAGE)
    raw.rpush("dramatiq:default", "garbage-1")
    for n in range(10, 20):
        client.enqueue("add", n)
    raw.hset("dramatiq:default.DQ.msgs", "garbage-2", GARBAGE + b"2")  # a scheduled one
    raw.rpush("dramatiq:default.DQ", "garbage-2")
    async with ActorSystem() as system:
        pool = WorkerPool(broker, tasks, concurrency=2, prefetch=32)  # fetched in one batch
        await pool.start(system)
        await eventually(lambda: sorted(ran) == list(range(20)), 20)
        await eventually(lambda: raw.zcard("dramatiq:default.XQ") == 2, 10)
        await pool.stop()
    assert raw.hget("dramatiq:default.XQ.msgs", "garbage-1") == GARBAGE
    assert raw.hget("dramatiq:default.XQ.msgs", "garbage-2") == GARBAGE + b"2"
    reasons = RedisQueues(broker).reasons("default")
    assert set(reasons) == {"garbage-1", "garbage-2"}
    assert all(r.startswith("undecodable message: DecodeError") for r in reasons.values())
    shown = {r.id: r for r in Inspector(broker).dead("default")}  # what an operator sees
    assert set(shown) == {"garbage-1", "garbage-2"} and all(r.malformed for r in shown.values())
    assert shown["garbage-1"].error == reasons["garbage-1"]
    assert unacked_on_redis(redis_url) == 0
    assert raw.hlen("dramatiq:default.msgs") == 0 and raw.hlen("dramatiq:default.DQ.msgs") == 0
    raw.close()
    broker.close()


async def test_garbage_on_rabbitmq_is_dead_lettered_and_its_neighbours_run(
    rabbitmq_url: str,
) -> None:
    ran: list[int] = []
    tasks = _registry(ran)
    broker = open_broker(rabbitmq_url)
    client = TaskClient(broker, tasks)
    for n in range(10):
        client.enqueue("add", n)
    connection = pika.BlockingConnection(pika.URLParameters(rabbitmq_url))
    channel = connection.channel()
    properties = pika.BasicProperties(delivery_mode=2, headers={"origin": "elsewhere"})
    channel.basic_publish("", "default", GARBAGE, properties)
    channel.basic_publish("", "default.DQ", GARBAGE + b"2", properties)
    for n in range(10, 20):
        client.enqueue("add", n)
    async with ActorSystem() as system:
        pool = WorkerPool(broker, tasks, concurrency=2, prefetch=32)
        await pool.start(system)
        await eventually(lambda: sorted(ran) == list(range(20)), 20)
        await eventually(lambda: waiting(rabbitmq_url, "default.XQ") == 2, 10, in_thread=True)
        await pool.stop()
    shown = Inspector(broker).dead("default")  # what an operator sees; the messages stay
    assert len(shown) == 2 and all(r.malformed for r in shown)
    assert all((r.error or "").startswith("undecodable message: DecodeError") for r in shown)
    dead = []
    for _ in range(2):
        method, props, body = channel.basic_get("default.XQ", auto_ack=True)
        assert method is not None
        dead.append((body, props.headers))
    connection.close()
    assert sorted(body for body, _ in dead) == [GARBAGE, GARBAGE + b"2"]
    for _, headers in dead:
        assert headers["origin"] == "elsewhere"
        assert headers[REASON_HEADER].startswith("undecodable message: DecodeError")
    assert waiting(rabbitmq_url) == 0
    broker.close()
