"""Bad task settings fail at once with a ConfigError naming the setting."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from troupe import ConfigError
from troupe.brokers.tasks import Task, TaskClient, TaskRegistry, WorkerPool, open_broker
from troupe.brokers.tasks.transport import forget_stub


@pytest.fixture
def stub() -> Iterator[str]:
    yield "stub://config"
    forget_stub("config")


def test_task_definitions_are_checked() -> None:
    tasks = TaskRegistry()
    with pytest.raises(ConfigError, match="time_limit"):
        tasks.task(time_limit=0)(lambda: None)
    with pytest.raises(ConfigError, match="max_retries"):
        tasks.task(max_retries=-1)(lambda: None)
    with pytest.raises(ConfigError, match="queue"):
        tasks.task(queue="default.XQ")(lambda: None)

    @tasks.task
    def once() -> None: ...

    with pytest.raises(ConfigError, match="once"):
        tasks.task(name="once")(lambda: None)

    class Invoice(Task):
        queue = "low"
        max_retries = 2

        def run(self, order: str) -> str:
            return f"invoice {order}"

    definition = tasks.register(Invoice)
    assert (definition.name, definition.queue, definition.max_retries) == ("Invoice", "low", 2)
    assert definition("o-1") == "invoice o-1"
    assert tasks.queues() == ["default", "low"]
    with pytest.raises(KeyError, match="registered: Invoice, once"):
        tasks.get("missing")


def test_enqueue_options_are_checked(stub: str) -> None:
    client = TaskClient(stub)
    with pytest.raises(ConfigError, match="delay"):
        client.enqueue("t", delay=-1)
    with pytest.raises(ConfigError, match="process_at"):
        client.enqueue("t", delay=1, process_at=5.0)
    with pytest.raises(ConfigError, match="unique_for"):
        client.enqueue("t", unique_for=0)
    with pytest.raises(ConfigError, match="payload"):
        client.enqueue("t", object())
    with pytest.raises(ConfigError, match="task"):
        client.enqueue(42)


def test_pool_settings_are_checked(stub: str) -> None:
    tasks = TaskRegistry()
    with pytest.raises(ConfigError, match="concurrency"):
        WorkerPool(stub, tasks, concurrency=0)
    with pytest.raises(ConfigError, match="queues"):
        WorkerPool(stub, tasks, queues={"a": 0})
    with pytest.raises(ConfigError, match="registry"):
        WorkerPool(stub, {})  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="broker"):
        open_broker("kafka://127.0.0.1:9092")
    pool = WorkerPool(stub, tasks, queues=["a", "b"])
    assert pool.intake.picker.weights == {"a": 1, "b": 1}
