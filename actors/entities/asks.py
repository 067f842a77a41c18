"""Asks to entities, answered through the remote-actor reply path.

An ask is published to the key's partition or shard like a tell, with two headers:
``troupe-reply-to`` (the asking system's inbox on the broker, see
:mod:`troupe.actors.remote_node`) and ``troupe-correlation-id``. The host that applies
the message replies with the handler's return value (or the error the message was
dead-lettered with) once the entity's state is saved, so a reply never reports a
state that a crash could take back. The message itself is at least once and applied
once (as a tell); the reply is at most once: a member killed between the save and
the reply leaves the asker to its timeout (the message was applied).
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from troupe import ActorSystem, AskTimeout
from troupe.brokers import Broker
from troupe.errors import check_timeout
from troupe.ref import SYSTEM_TIMEOUT

from ..remote import remote_node
from ..remote_wire import type_name

if TYPE_CHECKING:
    from .sharding import Entities

REPLY_TO = "troupe-reply-to"
CORRELATION = "troupe-correlation-id"


async def ask_entity(
    entities: Entities, key: str, message: Any, timeout: float | object | None
) -> Any:
    """Publish ``message`` to the entity ``key`` with a reply address; its reply."""
    system = entities.system
    if timeout is SYSTEM_TIMEOUT:
        timeout = system.ask_timeout
    elif timeout is not None:
        timeout = check_timeout("timeout", timeout)
    assert timeout is None or isinstance(timeout, float | int)
    node = remote_node(system, entities.broker)
    name = f"{entities.kind}:{key}"
    corr, future = node.expect_reply(name)
    try:
        async with asyncio.timeout(timeout):
            await node.ready()  # the reply must find the inbox read
            headers = {REPLY_TO: node.inbox, CORRELATION: corr}
            await entities.producer.ask(entities.publish(key, message, headers=headers))
            return await future
    except TimeoutError:
        assert timeout is not None
        raise AskTimeout(name, timeout) from None
    finally:
        if not future.done():
            future.cancel()  # the node forgets it; a late reply finds nothing


def send_reply(
    system: ActorSystem,
    broker: Broker,
    headers: Mapping[str, str],
    result: Any,
    error: BaseException | None,
) -> None:
    """Reply to an ask applied by a host (``error``: the message was dead-lettered)."""
    corr = headers.get(CORRELATION)
    if corr is None:
        return
    node = remote_node(system, broker)
    if error is None:
        node.reply(headers[REPLY_TO], corr, result)
    else:
        node.reply_error(headers[REPLY_TO], corr, type_name(error), str(error))


__all__ = ["CORRELATION", "REPLY_TO", "ask_entity", "send_reply"]
