"""Declared message types: what a handler says it takes, read without importing any library.

An actor declares the type of its messages with a class attribute
``message_type`` or with the annotation of ``receive``'s parameter; a broker
bridge in front of it then decodes each payload into that type (see
:mod:`troupe.brokers.typed_payloads`). The types understood are dataclasses, Pydantic
models and msgspec Structs.

>>> from dataclasses import dataclass
>>> from troupe import Actor
>>> @dataclass
... class Order:
...     id: str
...     qty: int
>>> class Orders(Actor):
...     def receive(self, order: Order) -> None: ...
>>> message_type_of(Orders).__name__
'Order'
>>> message_type_of(Actor) is None
True
"""

from __future__ import annotations

import dataclasses
import inspect
import typing
from typing import Any

from .errors import ConfigError


def type_kind(message_type: Any) -> str | None:
    """``"msgspec"``, ``"pydantic"``, ``"dataclass"`` or None (not a type troupe decodes)."""
    if not isinstance(message_type, type):
        return None
    for base in message_type.__mro__:
        where = (base.__module__, base.__name__)
        if where[0].startswith("msgspec") and where[1] == "Struct":
            return "msgspec"
        if where == ("pydantic.main", "BaseModel"):
            return "pydantic"
    if dataclasses.is_dataclass(message_type):
        return "dataclass"
    return None


def message_type_of(actor_class: type) -> type | None:
    """The message type ``actor_class`` declares: its ``message_type`` attribute, else the
    annotation of ``receive``'s message parameter when that is a type troupe decodes."""
    declared = getattr(actor_class, "message_type", None)
    if declared is not None:
        if type_kind(declared) is None:
            raise ConfigError(
                "message_type",
                f"{actor_class.__name__}.message_type must be a dataclass, a Pydantic model "
                f"or a msgspec Struct, got {declared!r}",
            )
        return typing.cast(type, declared)
    receive = getattr(actor_class, "receive", None)
    if receive is None:
        return None
    try:
        parameters = list(inspect.signature(receive).parameters.values())
    except (TypeError, ValueError):
        return None
    if len(parameters) < 2:
        return None
    name = parameters[1].name
    try:
        hints = typing.get_type_hints(receive)
    except Exception:  # an annotation that does not resolve: nothing declared
        return None
    hint = hints.get(name)
    return typing.cast(type, hint) if type_kind(hint) is not None else None


__all__ = ["message_type_of", "type_kind"]
