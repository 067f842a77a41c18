"""Queue priority: weighted shares measured with every queue full, idle weight reused,
strict priority; and the picker's rules as properties."""

from __future__ import annotations

import threading
import time

import dramatiq
import pytest
from hypothesis import given
from hypothesis import strategies as st

from tests.helpers import eventually
from troupe import ActorSystem, ConfigError
from troupe.brokers.tasks import Picker, TaskClient, TaskRegistry, WorkerPool
from troupe.brokers.tasks.intake import Intake, Job

pytestmark = pytest.mark.broker

WEIGHTS = {"critical": 6, "default": 3, "low": 1}


def recording_tasks(order: list[str], lock: threading.Lock, pause: float) -> TaskRegistry:
    tasks = TaskRegistry()

    @tasks.task
    def work(queue: str) -> None:
        with lock:
            order.append(queue)
        time.sleep(pause)

    return tasks


def fill(client: TaskClient, per_queue: int) -> None:
    for queue in WEIGHTS:
        for _ in range(per_queue):
            client.enqueue("work", queue, queue=queue)


@pytest.mark.parametrize("strict", [False, True], ids=["weighted", "strict"])
async def test_processed_shares_follow_the_weights(
    task_broker: dramatiq.Broker, strict: bool
) -> None:
    order: list[str] = []
    lock = threading.Lock()
    tasks = recording_tasks(order, lock, 0.002)
    fill(TaskClient(task_broker, tasks), 400)
    measured = 500  # low (10%) has 400 queued: every queue stays full while these run
    async with ActorSystem() as system:
        pool = WorkerPool(
            task_broker, tasks, queues=WEIGHTS, strict=strict, concurrency=4, prefetch=64
        )
        await pool.start(system)
        await eventually(lambda: len(order) >= measured, 30)
        await pool.stop()
    first = order[:measured]
    shares = {q: first.count(q) / measured for q in WEIGHTS}
    if strict:
        # strict: critical whenever one is fetched and ready; others only when none is
        # (an AMQP consumer's buffer can run dry for a moment: allow a few)
        assert first[:400].count("critical") >= 380, shares
    else:
        for queue, weight in WEIGHTS.items():
            assert abs(shares[queue] - weight / 10) <= 0.03, shares


async def test_idle_queues_leave_their_weight_to_the_others(task_broker: dramatiq.Broker) -> None:
    order: list[str] = []
    lock = threading.Lock()
    tasks = recording_tasks(order, lock, 0.0)
    client = TaskClient(task_broker, tasks)
    for _ in range(200):
        client.enqueue("work", "low", queue="low")
    async with ActorSystem() as system:
        pool = WorkerPool(task_broker, tasks, queues=WEIGHTS, concurrency=2)
        await pool.start(system)
        # only "low" has work: it gets every worker, at full speed
        await eventually(lambda: len(order) == 200, 20)
        await pool.stop()
    assert set(order) == {"low"}


@given(
    weights=st.dictionaries(st.sampled_from("abcdef"), st.integers(1, 9), min_size=1),
    ready=st.lists(st.sets(st.sampled_from("abcdef")), min_size=1, max_size=60),
)
def test_the_picker_picks_only_ready_queues_and_shares_by_weight(
    weights: dict[str, int], ready: list[set[str]]
) -> None:
    picker = Picker(weights)
    for available in ready:
        pick = picker.pick(lambda q, available=available: q in available)  # type: ignore[misc]
        live = available & set(weights)
        assert (pick is None) == (not live)
        assert pick is None or pick in live
    # all ready: every window of sum(weights) picks has the exact shares
    total = sum(weights.values())
    picks = [picker.pick(lambda q: True) for _ in range(3 * total)]
    window = picks[total : 2 * total]
    assert {q: window.count(q) for q in weights} == weights
    strict = Picker(weights, strict=True)
    heaviest = max(weights.values())
    assert weights[strict.pick(lambda q: True) or ""] == heaviest


def test_bad_weights_are_config_errors() -> None:
    with pytest.raises(ConfigError, match="weight"):
        Picker({"a": 0})
    with pytest.raises(ConfigError, match="queue name"):
        Picker({"a.DQ": 1})


def test_a_pending_queue_keeps_its_turn_and_an_empty_one_gives_it_away() -> None:
    def job(queue: str) -> Job:
        return Job(None, None, queue)  # type: ignore[arg-type]

    intake = Intake({"critical": 6, "low": 1}, grace=5.0)
    intake.put(job("low"))
    # critical's fetcher has not reported yet: its turn waits for its message
    threading.Timer(0.1, intake.put, [job("critical")]).start()
    started = time.monotonic()
    taken = intake.take(2.0)
    assert taken is not None and taken.queue == "critical"
    assert 0.05 < time.monotonic() - started < 2.0
    # once its fetcher finds it empty, critical is idle: low is taken at once
    intake.mark_empty("critical")
    started = time.monotonic()
    taken = intake.take(2.0)
    assert taken is not None and taken.queue == "low"
    assert time.monotonic() - started < 0.05
    # a fetcher that never reports costs one grace, then the queue counts as idle
    quiet = Intake({"critical": 6, "low": 1}, grace=0.1)
    quiet.put(job("low"))
    quiet.put(job("low"))
    first = quiet.take(2.0)
    assert first is not None and first.queue == "low"
    started = time.monotonic()
    second = quiet.take(2.0)
    assert second is not None and second.queue == "low"
    assert time.monotonic() - started < 0.05
