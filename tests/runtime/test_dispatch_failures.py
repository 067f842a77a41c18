"""A failed message whose failure handling is slow does not break the actor's turn.

Regression: the dispatcher counted such a failure twice as a slow call, its
metrics row went negative (``ValueError`` out of the turn) and the actor was left
scheduled with messages that nothing handled any more.
"""

from __future__ import annotations

import time
from typing import Any

from troupe import Actor, ActorSystem, RestartPolicy
from troupe.backoff import Backoff


class Flaky(Actor):
    restart_policy = RestartPolicy(max_restarts=1000, within=1.0, backoff=Backoff.none())

    def receive(self, message: Any) -> Any:
        if message == "fail":
            raise ValueError("planned")
        return message


async def test_actor_keeps_handling_after_a_failure_with_slow_failure_handling() -> None:
    async with ActorSystem("dispatch-failures") as system:
        system.add_failure_listener(lambda child, exc: time.sleep(0.002))  # slow logging
        flaky = system.spawn(Flaky, name="flaky")
        for round_ in range(5):
            flaky.tell("fail")  # the first message of a turn
            flaky.tell("ok")
            assert await flaky.ask(round_, timeout=5.0) == round_
