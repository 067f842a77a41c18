"""Retry rules as properties: for any run of failures and any max_retries, a task runs
until it succeeds or has failed max_retries + 1 times, then is done or dead — never both,
never lost; retries keep dramatiq's counters on the message (StubBroker, no waiting)."""

from __future__ import annotations

from queue import Empty

from dramatiq.brokers.stub import StubBroker
from hypothesis import given
from hypothesis import strategies as st

from troupe import Backoff
from troupe.brokers.tasks import MemoryControl, TaskClient, TaskRegistry, TaskStats
from troupe.brokers.tasks.intake import Job
from troupe.brokers.tasks.runner import Runner
from troupe.brokers.tasks.transport import delay_queue


@given(
    failures=st.integers(0, 8),
    max_retries=st.integers(0, 6),
    on_message=st.booleans(),
)
def test_a_task_ends_done_or_dead_after_the_allowed_attempts(
    failures: int, max_retries: int, on_message: bool
) -> None:
    broker = StubBroker(middleware=[])
    attempts: list[int] = []
    tasks = TaskRegistry()

    @tasks.task(max_retries=None if on_message else max_retries)
    def sometimes(n: int) -> None:
        attempts.append(len(attempts))
        if len(attempts) <= failures:
            raise RuntimeError(f"failure {len(attempts)}")

    stats = TaskStats(None)
    runner = Runner(broker, tasks, MemoryControl(), stats, backoff=Backoff(0.0, 0.0))
    client = TaskClient(broker, tasks, control=runner.control)
    client.enqueue("sometimes", 1, max_retries=max_retries if on_message else None)
    outcomes = []
    for _ in range(50):  # drain the queue and its delay queue, ignoring the eta
        job = _next_job(broker)
        if job is None:
            break
        outcomes.append(runner.process(job))
    allowed = max_retries + 1
    expected_attempts = min(failures + 1, allowed)
    assert len(attempts) == expected_attempts
    succeeded = failures < allowed
    assert outcomes == ["retried"] * (expected_attempts - 1) + ["done" if succeeded else "dead"]
    dead = broker.dead_letters_by_queue["default"]
    assert len(dead) == (0 if succeeded else 1)
    if dead:
        assert dead[0].options["retries"] == max_retries  # retries run, as dramatiq records
    assert stats.total("sometimes", "default", "retried") == expected_attempts - 1


def _next_job(broker: StubBroker) -> Job | None:
    for name in ("default", delay_queue("default")):
        consumer = broker.consume(name, prefetch=1, timeout=1)
        try:
            proxy = next(consumer)
        except Empty:
            proxy = None
        if proxy is None:
            continue
        if name != "default":  # what the delay fetcher does once the eta passed
            ready = proxy.copy(queue_name="default")
            ready.options.pop("eta", None)
            broker.enqueue(ready)
            consumer.ack(proxy)
            return _next_job(broker)
        return Job(proxy, consumer, "default")
    return None
