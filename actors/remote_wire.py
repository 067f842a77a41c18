"""The wire of remote actors: JSON with refs, and the told messages of an export's stream.

A ref inside a message travels as ``{"$ref": {"e": name}}`` (an exported name) or
``{"$ref": {"i": inbox, "a": actor}}`` (an actor of the system with that inbox);
an instance of a type registered with :func:`~troupe.actors.wire_type` travels as
``{"$type": name, "$value": fields}`` (:mod:`troupe.actors.wire_types`); anything
else that is not JSON is refused with a TypeError. Never pickle.
"""

from __future__ import annotations

import json
import json.scanner
from collections.abc import Callable
from json.encoder import c_make_encoder, encode_basestring_ascii  # type: ignore[attr-defined]
from typing import TYPE_CHECKING, Any

from troupe import ActorRef
from troupe.brokers import ConsumerBridge
from troupe.brokers.message import CONTENT_TYPE

from .remote_ref import RemoteRef
from .wire_types import from_wire, is_wire_document, to_wire, wire_name

if TYPE_CHECKING:
    from .remote_node import RemoteNode

#: The content type of told messages on an export's stream.
TOLD_TYPE = "application/vnd.troupe.remote+json"
TOLD_HEADERS = {CONTENT_TYPE: TOLD_TYPE}


def _encoder(default: Callable[[Any], Any]) -> Callable[[Any], str]:
    """Compact JSON text (``ensure_ascii``), ``default`` for other objects: the C encoder
    made once, not once per call as ``json.dumps`` does (pure-Python json: dumps)."""
    if c_make_encoder is None:  # pragma: no cover - CPython always has the C encoder
        encoder = json.JSONEncoder(default=default, separators=(",", ":"))
        return encoder.encode
    markers: dict[int, Any] = {}
    iterencode = c_make_encoder(
        markers, default, encode_basestring_ascii, None, ":", ",", False, False, True
    )

    def encode(data: Any) -> str:
        try:
            return "".join(iterencode(data, 0))
        except BaseException:
            markers.clear()  # a failed encode leaves its containers marked
            raise

    return encode


Scan = Callable[[str, int], tuple[Any, int]]  # (text, index) -> (value, end)
#: the C scanner a JSONDecoder runs (typeshed types it as a class of its own)
_make_scanner: Callable[[json.JSONDecoder], Scan] = json.scanner.make_scanner  # type: ignore[assignment]
_scan = _make_scanner(json.JSONDecoder())


def _loads(text: str, scan: Scan) -> Any:
    """The value of ``text`` read by the C scanner alone when it is one value with nothing
    around it (as troupe writes it), else ``_UNSCANNED`` (then ``json.loads`` gives the
    exact result or error: whitespace around, extra data, not JSON)."""
    try:
        value, end = scan(text, 0)
    except StopIteration:
        return _UNSCANNED
    return value if end == len(text) else _UNSCANNED


_UNSCANNED = object()


class RefCodec:
    """JSON to and from bytes for one node: its local refs travel as refs to its inbox."""

    def __init__(self, node: RemoteNode) -> None:
        self.node = node
        self._encode = _encoder(self._ref_spec)
        self._scan_refs = _make_scanner(json.JSONDecoder(object_hook=self._hook))

    def encode(self, data: Any) -> bytes:
        """JSON bytes; refs become ``{"$ref": ...}``; anything else not JSON: TypeError."""
        return self._encode(data).encode()

    def decode(self, body: bytes) -> Any:
        """The JSON value of ``body``, with refs as refs (raises ValueError when not JSON)."""
        refs = b'"$' in body and (b'"$ref"' in body or b'"$type"' in body)  # else no hook
        try:
            text: str | None = str(body, "utf-8")
        except UnicodeDecodeError:
            text = None  # json.loads reads UTF-16 and UTF-32 too
        if text is not None:
            value = _loads(text, self._scan_refs if refs else _scan)
            if value is not _UNSCANNED:
                return value
        return json.loads(body, object_hook=self._hook) if refs else json.loads(body)

    def _ref_spec(self, obj: Any) -> Any:
        if isinstance(obj, ActorRef):
            return {"$ref": {"i": self.node.inbox, "a": obj.name}}
        if isinstance(obj, RemoteRef):
            return {"$ref": obj.spec}
        if wire_name(obj) is not None:
            return to_wire(obj)
        raise TypeError(
            f"a {type(obj).__name__} cannot travel to a remote actor: messages are JSON "
            f"(dict, list, str, int, float, bool, None), actor refs and types registered "
            f"with troupe.actors.wire_type"
        )

    def _hook(self, obj: dict[str, Any]) -> Any:
        if is_wire_document(obj):
            return from_wire(obj)
        spec = obj.get("$ref")
        if spec is None or len(obj) != 1 or not isinstance(spec, dict):
            return obj
        return self.ref_from(spec)

    def ref_from(self, spec: dict[str, Any]) -> ActorRef | RemoteRef:
        """The ref a ``{"$ref": spec}`` stands for (a local ref when it points home)."""
        if "e" in spec:
            return RemoteRef(self.node, export=str(spec["e"]))
        inbox, actor = str(spec.get("i", "")), str(spec.get("a", ""))
        if inbox == self.node.inbox:
            local = self.node.system.find(actor)
            if local is not None:
                return local
        return RemoteRef(self.node, inbox=inbox, actor=actor)


class Told:
    """A told message as an export's bridge decoded it: the payload and its sender."""

    __slots__ = ("message", "sender")

    def __init__(self, message: Any, sender: Any) -> None:
        self.message = message
        self.sender = sender


class RemoteCodec:
    """The serializer of an export's stream: ``{"p": payload, "s": sender}`` in JSON, refs
    as refs; a body that is not one raises (the bridge dead-letters it with the reason)."""

    content_type = TOLD_TYPE

    def __init__(self, codec: RefCodec) -> None:
        self.codec = codec

    def dumps(self, payload: Any) -> bytes:
        return self.codec.encode({"p": payload, "s": None})

    def loads(self, body: bytes) -> Told:
        data = self.codec.decode(body)
        if not isinstance(data, dict) or "p" not in data:
            raise ValueError("not a remote message: a JSON object with 'p' was expected")
        return Told(data["p"], data.get("s"))


class ExportBridge(ConsumerBridge):
    """The consumer bridge of an exported name: hands each message to the exported actor
    with its sender (the delivery contract is :class:`~troupe.brokers.ConsumerBridge`'s)."""

    def unwrap(self, payload: Any) -> tuple[Any, ActorRef | None]:
        if type(payload) is Told:
            return payload.message, payload.sender
        return payload, None  # a payload of another producer (its own content type): as it is


def type_name(exc: BaseException) -> str:
    """The qualified name of an exception's class (builtins without a module)."""
    kind = type(exc)
    return (
        kind.__qualname__
        if kind.__module__ == "builtins"
        else f"{kind.__module__}.{kind.__qualname__}"
    )


__all__ = [
    "TOLD_HEADERS",
    "TOLD_TYPE",
    "ExportBridge",
    "RefCodec",
    "RemoteCodec",
    "Told",
    "type_name",
]
