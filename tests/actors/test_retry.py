"""Retry: the shared Backoff as a policy for sync and async callables."""

from __future__ import annotations

import pytest

from troupe import ConfigError
from troupe.actors.retry import Retry
from troupe.supervisors import Backoff


class Flaky:
    def __init__(self, failures: int, exc: type[Exception] = ConnectionError) -> None:
        self.failures = failures
        self.calls = 0
        self.exc = exc

    def __call__(self) -> str:
        self.calls += 1
        if self.calls <= self.failures:
            raise self.exc(f"failure {self.calls}")
        return "ok"


async def test_async_call_retries_until_success_with_backoff_delays() -> None:
    delays: list[float] = []

    async def sleep(delay: float) -> None:
        delays.append(delay)

    policy = Retry(max_attempts=4, initial=0.1, maximum=0.3, multiplier=2, jitter="none")
    flaky = Flaky(3)

    async def call() -> str:
        return flaky()

    assert await policy.call(call, sleep=sleep) == "ok"
    assert flaky.calls == 4
    assert delays == [0.1, 0.2, 0.3]
    assert isinstance(policy.backoff, Backoff)


async def test_gives_up_after_max_attempts_with_the_last_error() -> None:
    async def sleep(delay: float) -> None:
        pass

    flaky = Flaky(10)
    with pytest.raises(ConnectionError, match="failure 3") as info:
        await Retry(max_attempts=3, initial=0).call(flaky, sleep=sleep)
    assert flaky.calls == 3
    assert "gave up after 3 attempts" in "".join(getattr(info.value, "__notes__", []))


def test_only_listed_exceptions_are_retried() -> None:
    policy = Retry(max_attempts=5, initial=0, retry_on=(ConnectionError,), give_up_on=(KeyError,))
    flaky = Flaky(2, ValueError)
    with pytest.raises(ValueError):
        policy.call_sync(flaky, sleep=lambda _: None)
    assert flaky.calls == 1
    assert policy.should_retry(ConnectionError(), 1)
    assert not policy.should_retry(ConnectionError(), 5)
    assert not Retry(retry_on=(LookupError,), give_up_on=(KeyError,)).retries(KeyError())


def test_decorates_sync_and_async_functions() -> None:
    import asyncio

    seen: list[tuple[int, float]] = []
    policy = Retry(max_attempts=3, initial=0)
    flaky_sync = Flaky(2)

    @policy
    def sync_fn() -> str:
        return flaky_sync()

    assert sync_fn() == "ok" and flaky_sync.calls == 3

    flaky_async = Flaky(1)

    @policy
    async def async_fn() -> str:
        return flaky_async()

    assert asyncio.run(async_fn()) == "ok" and flaky_async.calls == 2
    assert policy.call_sync(Flaky(1), on_retry=lambda a, e, d: seen.append((a, d))) == "ok"
    assert seen == [(1, 0.0)]


def test_bad_settings_are_config_errors() -> None:
    with pytest.raises(ConfigError, match="max_attempts"):
        Retry(max_attempts=0)
    with pytest.raises(ConfigError, match="jitter"):
        Retry(jitter="sometimes")
    assert Retry.never().max_attempts == 1


async def test_retry_waits_on_the_actor_system_clock() -> None:
    import asyncio

    from troupe import ActorSystem, VirtualClock

    clock = VirtualClock()
    async with ActorSystem(clock=clock) as system:
        flaky = Flaky(2)
        policy = Retry(max_attempts=3, initial=10.0, maximum=10.0, jitter="none")
        task = asyncio.create_task(policy.call(flaky, sleep=system.clock.sleep))
        await clock.advance(0)
        assert flaky.calls == 1 and not task.done()
        await clock.advance(10)
        assert flaky.calls == 2
        await clock.advance(10)
        assert await task == "ok" and flaky.calls == 3
