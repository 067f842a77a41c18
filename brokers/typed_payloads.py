"""Typed messages: a serializer that decodes JSON bodies into a declared type, validating.

``typed(Order)`` is a :class:`~troupe.brokers.message.Serializer` for a
dataclass, a Pydantic model or a msgspec Struct. A consumer bridge uses one
when it is given ``message_type=Order`` or when its target declares the type
(``Actor.message_type`` or the annotation of ``receive``, see
:mod:`troupe.message_types`): a payload that does not validate goes to the DLQ
with the validation error as its reason, and the bridge goes on. Producers
publish instances of these types as they are (JSON), with any serializer that
speaks JSON.

Decoding goes straight from the bytes where the library can: msgspec's typed
decoder (also used for dataclasses when msgspec is installed), Pydantic's
``model_validate_json``; a dataclass without either is built from ``json.loads``
with its fields checked by name only.

>>> from dataclasses import dataclass
>>> @dataclass
... class Order:
...     id: str
...     qty: int
>>> serializer = typed(Order)
>>> serializer.loads(b'{"id": "o1", "qty": 2}')
Order(id='o1', qty=2)
>>> serializer.dumps(Order("o2", 1))
b'{"id":"o2","qty":1}'
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Callable
from typing import Any

from troupe.errors import ConfigError
from troupe.message_types import type_kind

from .message import JSON


class TypedSerializer:
    """JSON bodies decoded into ``message_type`` (validated); see :func:`typed`."""

    content_type = "application/json"

    def __init__(self, message_type: type) -> None:
        kind = type_kind(message_type)
        if kind is None:
            raise ConfigError(
                "message_type",
                f"must be a dataclass, a Pydantic model or a msgspec Struct, got {message_type!r}",
            )
        self.message_type = message_type
        self.kind = kind
        #: what a DLQ reason says the body failed to decode as
        self.description = f"{message_type.__name__} (JSON)"
        self.loads: Callable[[bytes], Any] = _loader(message_type, kind)
        self.dumps: Callable[[Any], bytes] = _dumper(kind)

    def __repr__(self) -> str:
        return f"typed({self.message_type.__name__}, {self.kind})"


def typed(message_type: type) -> TypedSerializer:
    """A serializer that decodes JSON bodies into ``message_type`` (see the module doc)."""
    return TypedSerializer(message_type)


def _has(module: str) -> bool:
    try:
        __import__(module)
    except ImportError:
        return False
    return True


def _loader(message_type: type, kind: str) -> Callable[[bytes], Any]:
    if kind == "msgspec" or (kind == "dataclass" and _has("msgspec")):
        import msgspec

        decode: Callable[[bytes], Any] = msgspec.json.Decoder(message_type).decode
        return decode
    if kind == "pydantic":
        validate: Callable[[bytes], Any] = getattr(message_type, "model_validate_json")  # noqa: B009
        return validate
    if _has("pydantic"):
        from pydantic import TypeAdapter

        adapted: Callable[[bytes], Any] = TypeAdapter(message_type).validate_json
        return adapted
    names = {f.name for f in dataclasses.fields(message_type)}

    def build(body: bytes) -> Any:
        data = json.loads(body)
        if not isinstance(data, dict):
            raise ValueError(f"expected a JSON object, got {type(data).__name__}")
        unknown = set(data) - names
        if unknown:
            raise ValueError(f"unknown fields {sorted(unknown)}")
        return message_type(**data)

    return build


def _dumper(kind: str) -> Callable[[Any], bytes]:
    if kind == "msgspec" or (kind == "dataclass" and _has("msgspec")):
        import msgspec

        encode: Callable[[Any], bytes] = msgspec.json.Encoder().encode
        return encode
    return JSON.dumps  # JSON encodes dataclasses and models too (troupe.brokers.message)


__all__ = ["TypedSerializer", "typed"]
