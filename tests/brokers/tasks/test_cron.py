"""Periodic tasks: cron entries fire on time, once per tick, with two schedulers racing
(each with its own broker connection and control store, as on two nodes) and with three
scheduler processes, the leader killed with SIGKILL."""

from __future__ import annotations

import asyncio
import itertools
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis
from dramatiq import Message

from troupe import ActorRef, ActorSystem, Child, ConfigError
from troupe.brokers.tasks import (
    ControlStore,
    CronEntry,
    CronScheduler,
    Inspector,
    RedisControl,
    TaskClient,
    TaskRegistry,
    WorkerPool,
    open_broker,
)
from troupe.brokers.tasks.transport import forget_stub

pytestmark = pytest.mark.broker


@pytest.fixture(params=["stub", "redis"])
def node_url(request: pytest.FixtureRequest) -> Iterator[str]:
    """A broker URL every 'node' of a test opens for itself. Schedulers agree through
    the control store (Redis for several nodes), whatever the broker: RabbitMQ adds
    nothing here."""
    if request.param == "redis":
        yield request.getfixturevalue("redis_url")
        return
    name = request.node.name
    yield f"stub://{name}"
    forget_stub(name)


def node_client(url: str, tasks: TaskRegistry) -> TaskClient:
    """A client as another node has it: its own broker and control connections on Redis;
    the process-wide stub and its store on the stub."""
    broker = open_broker(url)
    control: ControlStore | None = RedisControl(url) if url.startswith("redis") else None
    return TaskClient(broker, tasks, control=control)


def fired(ref: ActorRef) -> list[tuple[str, float]]:
    scheduler = Child.of(ref).actor
    assert isinstance(scheduler, CronScheduler)
    return list(scheduler.fired)


def leading(ref: ActorRef) -> bool:
    scheduler = Child.of(ref).actor
    assert isinstance(scheduler, CronScheduler)
    return scheduler.leading


async def test_two_schedulers_racing_fire_once_per_tick(node_url: str) -> None:
    ran: list[str] = []
    lock = threading.Lock()
    tasks = TaskRegistry()

    @tasks.task
    def beat(tag: str) -> None:
        with lock:
            ran.append(tag)

    entries = [CronEntry("* * * * * *", "beat", ("second",))]  # six fields: seconds last
    async with ActorSystem() as system:
        a, b = (
            system.spawn(
                CronScheduler,
                node_client(node_url, tasks),
                entries,
                tick=0.05,
                lease=0.6,
                name=name,
            )
            for name in ("cron-a", "cron-b")
        )
        pool = WorkerPool(open_broker(node_url), tasks, concurrency=2)
        await pool.start(system)
        await asyncio.sleep(2.2)
        # the leader dies without releasing its lease: the other takes over once it expires
        leader, other = (a, b) if leading(a) else (b, a)
        assert leading(leader) and not leading(other)
        before = fired(leader)
        Child.of(leader).kill()
        await asyncio.sleep(2.5)
        after = fired(other)
        assert leading(other)
        await Child.of(other).stop_within(5)
        await asyncio.sleep(0.3)
        await pool.stop()
    ticks = Counter(due for _, due in before + after)
    assert len(before) >= 1 and len(after) >= 1
    assert all(n == 1 for n in ticks.values()), ticks  # no tick twice
    assert len(ran) == len(before) + len(after)
    # no tick missed but those within the lease after the leader died
    times = sorted(ticks)
    gaps = [b - a for a, b in itertools.pairwise(times)]
    assert max(gaps) <= 2.0, gaps


async def test_per_tick_claims_stop_a_double_fire_even_with_two_leaders(node_url: str) -> None:
    """A split brain: both schedulers of one group believe they hold the lease (a pause
    past it); the claim on each fire time alone keeps every tick single."""
    tasks = TaskRegistry()

    @tasks.task
    def beat() -> None: ...

    entries = [CronEntry("* * * * * *", "beat")]
    async with ActorSystem() as system:
        refs = [
            system.spawn(
                CronScheduler, node_client(node_url, tasks), entries, tick=0.05, name=f"c{i}"
            )
            for i in range(2)
        ]
        await asyncio.sleep(0.2)
        for ref in refs:  # make both believe they lead: the lease check is bypassed
            scheduler = Child.of(ref).actor
            assert isinstance(scheduler, CronScheduler)
            control = scheduler.client.control
            scheduler.client.control = _AlwaysLeader(control)
        await asyncio.sleep(2.1)
        fires = [f for ref in refs for f in fired(ref)]
        for ref in refs:
            await Child.of(ref).stop_within(5)
    ticks = Counter(due for _, due in fires)
    assert len(ticks) >= 2 and all(n == 1 for n in ticks.values()), ticks


class _AlwaysLeader:
    """A control store whose lease renewals always succeed (a split brain, on purpose)."""

    def __init__(self, inner: ControlStore) -> None:
        self.inner = inner

    def renew(self, key: str, owner: str, ttl: float) -> bool:
        return True

    def __getattr__(self, name: str) -> object:
        return getattr(self.inner, name)


def test_bad_cron_settings_are_config_errors() -> None:
    with pytest.raises(ConfigError, match="cron"):
        CronEntry("every minute", "beat")
    assert CronEntry("*/5 * * * *", "beat").next_after(0.0) == 300.0
    client = TaskClient(open_broker("stub://cron-config"))
    with pytest.raises(ConfigError, match="lease"):
        CronScheduler(client, [], tick=1.0, lease=0.5)
    with pytest.raises(ConfigError, match="unique"):
        CronScheduler(client, [CronEntry("* * * * *", "a"), CronEntry("* * * * *", "a")])
    forget_stub("cron-config")


def test_three_scheduler_processes_one_killed_fire_each_tick_once(redis_url: str) -> None:
    """Three OS processes race for the lease; the leader is killed with SIGKILL midway:
    another takes over once the lease expires, and no tick is enqueued twice."""
    script = str(Path(__file__).with_name("cron_node.py"))
    nodes = {
        node.pid: node
        for node in (
            subprocess.Popen(
                [sys.executable, script, redis_url, "6"], stdout=subprocess.PIPE, text=True
            )
            for _ in range(3)
        )
    }
    control = RedisControl(redis_url)
    inspector = Inspector(open_broker(redis_url))
    holder: str | None = None
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        time.sleep(0.05)
        holder = control.holder("cron:cron:leader")
        if holder is not None and inspector.queues(["default"])[0].pending >= 2:
            break
    assert holder is not None and holder.startswith("pid-")
    leader = nodes.pop(int(holder.removeprefix("pid-")))
    leader.kill()  # SIGKILL: it cannot release the lease
    outputs = {"leader": leader.communicate(timeout=10)[0]}
    for pid, node in nodes.items():
        outputs[str(pid)] = node.communicate(timeout=30)[0]
        assert node.returncode == 0
    control.close()

    def fires(output: str) -> list[str]:
        return [line.rsplit(" ", 1)[1] for line in output.splitlines() if line.startswith("fired")]

    everything = [due for out in outputs.values() for due in fires(out)]
    ticks = Counter(everything)
    assert all(n == 1 for n in ticks.values()), ticks
    assert fires(outputs["leader"]) and any(fires(o) for k, o in outputs.items() if k != "leader")
    assert len(ticks) >= 4, outputs
    # what is in the queue: one message per tick (the leader may have enqueued one more
    # than it printed before it was killed); a tick's task id names its fire time
    client = redis.Redis.from_url(redis_url)
    queued = [Message.decode(v).message_id for v in client.hvals("dramatiq:default.msgs")]
    client.close()
    assert len(queued) == len(set(queued)) >= len(everything)
    assert {f"cron:cron:beat@* * * * * *:{int(float(due))}" for due in everything} <= set(queued)


def _queued_tick_ids(url: str) -> list[str]:
    """The task ids of the messages waiting on ``default`` (one per enqueued tick)."""
    if url.startswith("redis"):
        client = redis.Redis.from_url(url)
        try:
            return [Message.decode(v).message_id for v in client.hvals("dramatiq:default.msgs")]
        finally:
            client.close()
    import pika

    connection = pika.BlockingConnection(pika.URLParameters(url))
    try:
        channel = connection.channel()
        ids = []
        try:
            channel.queue_declare("default", passive=True)
        except pika.exceptions.ChannelClosedByBroker:  # not declared yet: nothing enqueued
            return []
        while True:
            method, _, body = channel.basic_get("default", auto_ack=False)
            if method is None:
                return ids
            ids.append(Message.decode(body).message_id)
    finally:
        connection.close()  # unacked: the messages stay


@pytest.fixture(params=["redis", "rabbitmq"])
def cron_url(request: pytest.FixtureRequest, redis_url: str) -> str:
    """The broker the ticks are enqueued on (the lease is in Redis either way)."""
    if request.param == "redis":
        return redis_url
    url: str = request.getfixturevalue("rabbitmq_url")
    return url


def test_a_new_leader_fires_the_ticks_missed_in_the_failover_once(
    cron_url: str, redis_url: str
) -> None:
    """Two scheduler processes, lease 3 s; the leader is killed with SIGKILL. The other
    takes the lead once the lease expires (about 3 s later) and fires the ticks nobody
    fired meanwhile: the queue then holds every second's tick, once."""
    lease = 3.0
    script = str(Path(__file__).with_name("cron_node.py"))
    nodes = {
        node.pid: node
        for node in (
            subprocess.Popen(
                [sys.executable, script, cron_url, "11", str(lease), redis_url],
                stdout=subprocess.PIPE,
                text=True,
            )
            for _ in range(2)
        )
    }
    control = RedisControl(redis_url)
    holder: str | None = None
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        time.sleep(0.05)
        holder = control.holder("cron:cron:leader")
        if holder is not None and len(_queued_tick_ids(cron_url)) >= 3:
            break
    control.close()
    assert holder is not None
    leader = nodes.pop(int(holder.removeprefix("pid-")))
    leader.kill()
    killed = time.time()
    leader.communicate(timeout=10)
    [survivor] = nodes.values()
    output = survivor.communicate(timeout=40)[0]
    assert survivor.returncode == 0
    ids = _queued_tick_ids(cron_url)
    assert len(ids) == len(set(ids)), Counter(ids).most_common(3)  # never a tick twice
    seconds = sorted(int(i.rsplit(":", 1)[1]) for i in ids)
    assert seconds == list(range(seconds[0], seconds[-1] + 1)), seconds  # none missed
    assert seconds[0] < killed - 1 and seconds[-1] > killed + lease + 2  # across the failover
    caught_up = [
        float(line.rsplit(" ", 1)[1]) for line in output.splitlines() if line.startswith("fired")
    ]
    # ticks due while nobody led (the dead leader's lease ran >= 2.9 s past the kill)
    # were fired by the survivor, late
    assert any(killed < due < killed + lease - 1.1 for due in caught_up), (killed, caught_up)


def test_catch_up_shorter_than_the_lease_is_a_config_error() -> None:
    client = TaskClient(open_broker("stub://cron-catch-up"))
    with pytest.raises(ConfigError, match=r"cron\.catch_up"):
        CronScheduler(client, [], tick=1.0, lease=10.0, catch_up=5.0)
    assert CronScheduler(client, [], tick=1.0, lease=10.0).catch_up == 20.0
    forget_stub("cron-catch-up")
