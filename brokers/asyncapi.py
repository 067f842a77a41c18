"""AsyncAPI 3 documents: the channels a system's bridges consume and publish, with schemas.

:func:`document` reads the live bridges of a system: each
:class:`~troupe.brokers.ConsumerBridge` is a ``receive`` operation on its stream's
channel (its consumer group as a Kafka binding, its queue as an AMQP binding),
each :class:`~troupe.brokers.ProducerBridge` with a default stream a ``send``
operation. A channel's message payload is the JSON Schema of the typed message
the bridge decodes (see :mod:`troupe.brokers.typed_payloads`: the bridge's
``message_type`` or its target's), shared definitions in
``components.schemas``; an untyped channel's payload is any JSON. Servers are
the brokers, passwords left out.

:func:`serve_document` adds ``/asyncapi.json`` beside a system's ``/metrics``;
``troupe asyncapi TARGET`` writes the document of a ``build(system)`` function.

>>> import asyncio
>>> from troupe import ActorSystem
>>> async def main():
...     async with ActorSystem("shop") as system:
...         return document(system)["asyncapi"]
>>> asyncio.run(main())
'3.0.0'
"""

from __future__ import annotations

import asyncio
import json
import re
from typing import Any
from urllib.parse import urlsplit

from troupe import ActorSystem, Child, ConfigError
from troupe.message_types import type_kind

from .base import Broker
from .consumer import ConsumerBridge
from .producer import ProducerBridge
from .redaction import redact

VERSION = "3.0.0"
SCHEMAS = "#/components/schemas/"
ANY_JSON: dict[str, Any] = {"description": "any JSON value (the handler declares no type)"}


def document(
    system: ActorSystem, *, title: str | None = None, version: str = "1.0.0"
) -> dict[str, Any]:
    """The AsyncAPI 3 document of ``system``'s bridges (call it on the system's loop)."""
    builder = _Builder()
    actors = [Child.of(ref).actor for ref in system.actors()]
    for actor in actors:  # consumers first: they know the channels' message types
        if isinstance(actor, ConsumerBridge):
            builder.consumer(actor, _declared_type(system, actor))
    for actor in actors:
        if isinstance(actor, ProducerBridge) and actor.stream is not None:
            builder.producer(actor)
    doc: dict[str, Any] = {
        "asyncapi": VERSION,
        "info": {
            "title": title or system.name,
            "version": version,
            "description": f"Channels of troupe system {system.name!r}.",
        },
        "defaultContentType": "application/json",
    }
    if builder.servers:
        doc["servers"] = builder.servers
    doc["channels"] = builder.channels
    doc["operations"] = builder.operations
    components: dict[str, Any] = {}
    if builder.schemas:
        components["schemas"] = builder.schemas
    if builder.messages:
        components["messages"] = builder.messages
    if components:
        doc["components"] = components
    return doc


def to_json(system: ActorSystem, **options: Any) -> bytes:
    """:func:`document` as indented JSON."""
    return json.dumps(document(system, **options), indent=2).encode()


def serve_document(system: ActorSystem, path: str = "/asyncapi.json") -> str:
    """Serve the document at ``path`` beside the system's ``/metrics``; its URL.

    The system must serve metrics (``ActorSystem(metrics_port=...)``). Each request
    builds the document on the system's loop, so it shows the bridges running then.
    """
    endpoint = system.metrics_endpoint
    if endpoint is None:
        raise ConfigError("metrics_port", "serving the AsyncAPI document needs metrics_port")
    loop = system.loop

    def render() -> bytes:
        async def build() -> bytes:
            return to_json(system)

        return asyncio.run_coroutine_threadsafe(build(), loop).result(timeout=10)

    endpoint.add_document(path, "application/json", render)
    return endpoint.url.rsplit("/", 1)[0] + path


def _declared_type(system: ActorSystem, bridge: ConsumerBridge) -> type | None:
    found = getattr(bridge.serializer, "message_type", None) or bridge.payload_type
    if found is not None:
        return found
    target = bridge.target
    ref = system.find(target) if isinstance(target, str) else target
    return ref.message_type if ref is not None and ref.is_alive else None


def _key(text: str) -> str:
    """A component key AsyncAPI accepts (letters, digits, ``.``, ``_``, ``-``)."""
    return re.sub(r"[^A-Za-z0-9._-]", "_", text)


class _Builder:
    def __init__(self) -> None:
        self.servers: dict[str, Any] = {}
        self.channels: dict[str, Any] = {}
        self.operations: dict[str, Any] = {}
        self.messages: dict[str, Any] = {}
        self.schemas: dict[str, Any] = {}

    def server(self, broker: Broker) -> str:
        name = _key(broker.capabilities.name)
        url = urlsplit(redact(broker.url))
        server: dict[str, Any] = {
            "host": url.netloc.rsplit("@", 1)[-1] or broker.capabilities.name,
            "protocol": url.scheme or broker.capabilities.name,
        }
        if url.path and url.path != "/":
            server["pathname"] = url.path
        existing = self.servers.get(name)
        if existing is not None and existing != server:
            name = f"{name}-{len(self.servers)}"
        self.servers[name] = server
        return name

    def channel(self, broker: Broker, stream: str, message_type: type | None) -> tuple[str, str]:
        """The channel key of ``stream`` on ``broker`` and its message key."""
        server = self.server(broker)
        key = _key(f"{server}.{stream}")
        message = self.message(message_type)
        channel = self.channels.setdefault(
            key,
            {
                "address": stream,
                "servers": [{"$ref": f"#/servers/{server}"}],
                "messages": {},
            },
        )
        channel["messages"][message] = {"$ref": f"#/components/messages/{message}"}
        if broker.capabilities.name == "rabbitmq":
            channel["bindings"] = {
                "amqp": {"is": "queue", "queue": {"name": stream, "durable": True}}
            }
        return key, message

    def message(self, message_type: type | None) -> str:
        if message_type is None:
            self.messages.setdefault(
                "Payload",
                {"name": "Payload", "contentType": "application/json", "payload": ANY_JSON},
            )
            return "Payload"
        name = _key(message_type.__name__)
        if name not in self.messages:
            self.messages[name] = {
                "name": name,
                "title": message_type.__name__,
                "contentType": "application/json",
                "payload": self.schema(message_type),
            }
            doc = (message_type.__doc__ or "").strip()
            if doc and not doc.startswith(f"{message_type.__name__}("):  # not a generated one
                self.messages[name]["summary"] = doc.splitlines()[0]
        return name

    def schema(self, message_type: type) -> dict[str, Any]:
        """A ``$ref`` to the type's schema in components (its definitions there too)."""
        kind = type_kind(message_type)
        if kind == "pydantic":
            schema: dict[str, Any] = message_type.model_json_schema(  # type: ignore[attr-defined]
                ref_template=SCHEMAS + "{model}"
            )
            definitions = schema.pop("$defs", {})
            name = schema.get("title", message_type.__name__)
            self.schemas.update(definitions)
            self.schemas[name] = schema
            return {"$ref": SCHEMAS + name}
        try:
            import msgspec
        except ImportError:
            msgspec = None  # type: ignore[assignment]
        if msgspec is not None:
            (ref,), definitions = msgspec.json.schema_components(
                [message_type], ref_template=SCHEMAS + "{name}"
            )
            self.schemas.update(definitions)
            return ref
        from pydantic import TypeAdapter  # a dataclass without msgspec

        schema = TypeAdapter(message_type).json_schema(ref_template=SCHEMAS + "{model}")
        self.schemas.update(schema.pop("$defs", {}))
        self.schemas[message_type.__name__] = schema
        return {"$ref": SCHEMAS + message_type.__name__}

    def consumer(self, bridge: ConsumerBridge, message_type: type | None) -> None:
        channel, message = self.channel(bridge.broker, bridge.stream, message_type)
        operation: dict[str, Any] = {
            "action": "receive",
            "channel": {"$ref": f"#/channels/{channel}"},
            "messages": [{"$ref": f"#/channels/{channel}/messages/{message}"}],
            "summary": f"{bridge.name} delivers to {_target_name(bridge)} (group {bridge.group})",
        }
        if bridge.broker.capabilities.name == "kafka":
            operation["bindings"] = {
                "kafka": {"groupId": {"type": "string", "enum": [bridge.group]}}
            }
        self.operations[_key(f"receive.{channel}.{bridge.group}")] = operation

    def producer(self, bridge: ProducerBridge) -> None:
        assert bridge.stream is not None
        key = _key(f"{self.server(bridge.broker)}.{bridge.stream}")
        known = self.channels.get(key)
        if known is not None:  # a consumer here says what the messages are
            channel, messages = key, list(known["messages"])
        else:
            channel, message = self.channel(bridge.broker, bridge.stream, None)
            messages = [message]
        self.operations[_key(f"send.{channel}.{bridge.name}")] = {
            "action": "send",
            "channel": {"$ref": f"#/channels/{channel}"},
            "messages": [{"$ref": f"#/channels/{channel}/messages/{m}"} for m in messages],
            "summary": f"{bridge.name} publishes",
        }


def _target_name(bridge: ConsumerBridge) -> str:
    target = bridge.target
    return target if isinstance(target, str) else target.name


__all__ = ["document", "serve_document", "to_json"]
