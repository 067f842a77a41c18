"""Message types that travel to remote actors as JSON (never pickle).

A remote actor's messages are JSON; a dataclass, Pydantic model or msgspec Struct
registered here travels too, as ``{"$type": name, "$value": {fields}}``, and is
built again, validated, where it arrives (with :mod:`troupe.brokers.typed_payloads`'
libraries: msgspec, else Pydantic, else the fields by name). Only registered types
are built: a process decodes no type it did not register under that name. Both
sides register the same types, usually by importing the module that defines them.

>>> from dataclasses import dataclass
>>> @wire_type
... @dataclass
... class Reserve:
...     sku: str
...     qty: int
>>> document = to_wire(Reserve("book", 2))
>>> document
{'$type': 'Reserve', '$value': {'sku': 'book', 'qty': 2}}
>>> from_wire(document)
Reserve(sku='book', qty=2)
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any, TypeVar

from troupe.errors import ConfigError
from troupe.message_types import type_kind

T = TypeVar("T", bound=type)

TYPE_KEY = "$type"
VALUE_KEY = "$value"

_by_name: dict[str, type] = {}
_names: dict[type, str] = {}
_builders: dict[type, Callable[[dict[str, Any]], Any]] = {}


def wire_type(cls: T | None = None, *, name: str | None = None) -> Any:
    """Register ``cls`` (a dataclass, Pydantic model or msgspec Struct) to travel under
    ``name`` (default: its class name); a decorator, with or without arguments.

    A name taken by another class raises ConfigError naming ``name``."""

    def register(kind: T) -> T:
        if type_kind(kind) is None:
            raise ConfigError(
                "wire_type",
                f"must be a dataclass, a Pydantic model or a msgspec Struct, got {kind!r}",
            )
        wire_name = name or kind.__name__
        known = _by_name.get(wire_name)
        # the same class defined again (a module reloaded) takes the name over
        if known is not None and _path(known) != _path(kind):
            raise ConfigError(
                "name",
                f"wire type {wire_name!r} is already {_path(known)}; "
                "register this one under another name",
            )
        _by_name[wire_name] = kind
        _names[kind] = wire_name
        _builders[kind] = _builder(kind)
        return kind

    return register if cls is None else register(cls)


def _path(kind: type) -> str:
    return f"{kind.__module__}.{kind.__qualname__}"


def wire_name(obj: Any) -> str | None:
    """The registered name of ``obj``'s type, or None."""
    return _names.get(type(obj))


def to_wire(obj: Any) -> dict[str, Any]:
    """``{"$type": name, "$value": fields}`` for an instance of a registered type (TypeError
    otherwise); nested values are left to the JSON encoder (registered types in turn)."""
    name = _names.get(type(obj))
    if name is None:
        raise TypeError(f"{type(obj).__name__} is not a registered wire type (see wire_type)")
    if dataclasses.is_dataclass(obj):
        fields = {f.name: getattr(obj, f.name) for f in dataclasses.fields(obj)}
    elif hasattr(obj, "model_dump"):
        fields = obj.model_dump(mode="json")
    else:
        import msgspec

        fields = msgspec.to_builtins(obj)
    return {TYPE_KEY: name, VALUE_KEY: fields}


def from_wire(document: dict[str, Any]) -> Any:
    """The instance a :func:`to_wire` document describes; ValueError naming the problem when
    its type is not registered here or its fields do not validate."""
    name = document.get(TYPE_KEY)
    kind = _by_name.get(name) if isinstance(name, str) else None
    if kind is None:
        raise ValueError(f"unknown wire type {name!r}: register it with wire_type in this process")
    value = document.get(VALUE_KEY)
    if not isinstance(value, dict):
        raise ValueError(f"wire type {name!r}: {VALUE_KEY!r} must be a JSON object")
    try:
        return _builders[kind](value)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"wire type {name!r} does not validate: {exc}") from None


def is_wire_document(obj: dict[str, Any]) -> bool:
    """True for a ``{"$type": ..., "$value": ...}`` object."""
    return len(obj) == 2 and TYPE_KEY in obj and VALUE_KEY in obj


def _builder(kind: type) -> Callable[[dict[str, Any]], Any]:
    if hasattr(kind, "model_validate"):
        validate: Callable[[dict[str, Any]], Any] = getattr(kind, "model_validate")  # noqa: B009
        return validate
    try:
        import msgspec
    except ImportError:
        names = {f.name for f in dataclasses.fields(kind)}

        def build(value: dict[str, Any]) -> Any:
            unknown = set(value) - names
            if unknown:
                raise ValueError(f"unknown fields {sorted(unknown)}")
            return kind(**value)

        return build

    def convert(value: dict[str, Any]) -> Any:
        try:
            return msgspec.convert(value, kind, from_attributes=True)
        except msgspec.ValidationError as exc:
            raise ValueError(str(exc)) from None

    return convert


__all__ = ["from_wire", "is_wire_document", "to_wire", "wire_name", "wire_type"]
