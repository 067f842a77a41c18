"""The message model every broker shares: ``Message``, header names, serializers.

A ``Message`` is what travels through a broker: an id, an optional key, string
headers, the body as bytes and a timestamp. Payloads become bodies through a
``Serializer`` (JSON by default). Nothing read from a broker is ever unpickled.

On the wire (a Redis Streams entry, the in-memory broker's log) a message is a
flat mapping of short field names to bytes, built by :func:`to_fields` and read
back by :func:`from_fields`, which raises :class:`MalformedMessage` with the
reason when an entry cannot be read.
"""

from __future__ import annotations

import dataclasses
import itertools
import json
import json.encoder
import json.scanner
import os
import re
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

from troupe.errors import TroupeError

# -- header names -------------------------------------------------------------------------

TRACEPARENT = "traceparent"  #: W3C trace context, carried unchanged
ATTEMPT = "troupe-attempt"  #: delivery number (1 on the first delivery), set on delivery
IDEMPOTENCY_KEY = "troupe-idempotency-key"  #: the key effects are deduplicated on
ERROR_REASON = "troupe-error"  #: why a message was dead-lettered
CONTENT_TYPE = "content-type"  #: the serializer's content type
MESSAGE_ID = "troupe-message-id"  #: the message id, set on delivery
STREAM = "troupe-stream"  #: the stream a delivery came from, set on delivery
ENTRY_ID = "troupe-entry-id"  #: the broker's position of the entry, set on delivery
KEY = "troupe-key"  #: the message's key (Kafka record key, RabbitMQ routing key), on delivery
ORIGINAL_STREAM = "troupe-original-stream"  #: where a dead-lettered message was consumed
ORIGINAL_GROUP = "troupe-original-group"  #: the consumer group that dead-lettered it
ORIGINAL_ENTRY_ID = "troupe-original-entry-id"  #: its entry id (or partition:offset) there
ORIGINAL_PARTITION = "troupe-original-partition"  #: its partition (brokers that have them)
ORIGINAL_OFFSET = "troupe-original-offset"  #: its offset (brokers that have them)
DELIVERIES = "troupe-deliveries"  #: handler starts (attempts) before dead-lettering


class MalformedMessage(TroupeError):
    """A broker entry or body could not be read; the reason says what was wrong."""


class _Ids:
    """Message ids: 32 hex digits, a random prefix of this process (80 bits, drawn again
    in a forked child) and a counter, unique across processes and restarts without a
    system call per message."""

    def __init__(self) -> None:
        self.renew()
        os.register_at_fork(after_in_child=self.renew)

    def renew(self) -> None:
        self.prefix = os.urandom(10).hex()
        self.counter = itertools.count(int.from_bytes(os.urandom(4), "big"))

    def __call__(self) -> str:
        return f"{self.prefix}{next(self.counter) & 0xFFFFFFFFFFFF:012x}"


#: a new message id (32 hex digits, unique across processes and restarts)
new_id: Callable[[], str] = _Ids()


@dataclass(slots=True)
class Message:
    """One broker message. ``body`` is bytes; ``headers`` map strings to strings.

    ``raw`` is set only on the DLQ copy of an entry that could not be read as a
    message: its original fields, byte for byte (``body`` is then empty).
    """

    body: bytes
    key: str | None = None
    headers: dict[str, str] = field(default_factory=dict)
    id: str = field(default_factory=new_id)
    timestamp: float = field(default_factory=time.time)
    raw: dict[bytes, bytes] | None = None

    @property
    def idempotency_key(self) -> str:
        """The ``troupe-idempotency-key`` header, or the message id."""
        return self.headers.get(IDEMPOTENCY_KEY) or self.id


# -- serializers --------------------------------------------------------------------------


class Serializer(Protocol):
    """Turns payloads into bodies and back. ``loads`` raises on a body it cannot read."""

    content_type: str

    def dumps(self, payload: Any) -> bytes: ...

    def loads(self, body: bytes) -> Any: ...


def _typed_default(value: Any) -> Any:
    """JSON for typed messages: dataclasses, Pydantic models and msgspec Structs."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return dataclasses.asdict(value)
    dump = getattr(value, "model_dump", None)  # a Pydantic model
    if dump is not None:
        return dump(mode="json")
    if hasattr(type(value), "__struct_fields__"):  # a msgspec Struct
        import msgspec

        return msgspec.to_builtins(value)
    raise TypeError(f"Object of type {type(value).__name__} is not JSON serializable")


# json's C encoder with the settings of JsonSerializer.dumps, made once; None without
# the C accelerator. No circular-reference markers: a circular payload ends in a
# RecursionError, and json.dumps then reports it.
_encode: Callable[[Any, int], Any] | None = (
    json.encoder.c_make_encoder(  # type: ignore[attr-defined]
        None, _typed_default, json.encoder.encode_basestring, None, ":", ",", False, False, True
    )
    if json.encoder.c_make_encoder is not None  # type: ignore[attr-defined]
    else None
)


class JsonSerializer:
    """JSON in UTF-8 (the default); dataclasses, Pydantic models and msgspec Structs too."""

    content_type = "application/json"

    def dumps(self, payload: Any) -> bytes:
        if _encode is not None:  # json's C encoder, made once (json.dumps makes one per call)
            try:
                return "".join(_encode(payload, 0)).encode()
            except RecursionError:
                pass  # too deep or circular: json.dumps says which
        return json.dumps(
            payload, separators=(",", ":"), ensure_ascii=False, default=_typed_default
        ).encode()

    def loads(self, body: bytes) -> Any:
        # UTF-8 text without surrounding whitespace straight to json's scanner (json.loads
        # sniffs the encoding and matches whitespace around the value first); anything
        # else (whitespace, UTF-16/32, a BOM, not JSON) takes json.loads' way, errors included
        try:
            text = body.decode()
            value, end = _scan(text, 0)
            if end == len(text):
                return value
        except (ValueError, AttributeError, StopIteration):
            pass
        return json.loads(body)


# json's own scanner over a default decoder (typeshed types its context as the scanner)
_scan: Callable[[str, int], tuple[Any, int]] = json.scanner.make_scanner(
    json.JSONDecoder()  # type: ignore[arg-type]
)


class BytesSerializer:
    """Bodies pass through unchanged (payloads must be bytes)."""

    content_type = "application/octet-stream"

    def dumps(self, payload: Any) -> bytes:
        if not isinstance(payload, bytes | bytearray | memoryview):
            raise TypeError(f"BytesSerializer publishes bytes, got {type(payload).__name__}")
        return bytes(payload)

    def loads(self, body: bytes) -> Any:
        return body


class TextSerializer:
    """UTF-8 text (``text/plain``): payloads are str."""

    content_type = "text/plain"

    def dumps(self, payload: Any) -> bytes:
        if not isinstance(payload, str):
            raise TypeError(f"TextSerializer publishes str, got {type(payload).__name__}")
        return payload.encode()

    def loads(self, body: bytes) -> Any:
        return body.decode()


JSON = JsonSerializer()
BYTES = BytesSerializer()
TEXT = TextSerializer()


def serializer_for(content_type: str | None, default: Serializer) -> Serializer:
    """How to read a body of ``content_type`` (a message of another producer, say).

    ``default`` when the type is absent or ``default``'s own (or ``default`` reads
    bytes); JSON for ``*/json`` and ``*/*+json``; text for ``text/*``; bytes for
    any other type.
    """
    if content_type is None or default.content_type in (content_type, BYTES.content_type):
        return default
    base = content_type.split(";", 1)[0].strip().lower()
    if base == default.content_type:
        return default
    if base.endswith(("/json", "+json")):
        return JSON
    if base.startswith("text/"):
        return TEXT
    return BYTES


def build_message(
    payload: Any, serializer: Serializer, *, key: str | None, headers: dict[str, str]
) -> Message:
    """A Message for ``payload``, taking ``headers`` as its own (no copy): bytes payloads
    are the body as they are (marked ``application/octet-stream``), others go through
    ``serializer``; the content type is added to ``headers`` unless set."""
    if isinstance(payload, bytes | bytearray | memoryview):
        body = bytes(payload)
        content_type = BYTES.content_type
    else:
        body = serializer.dumps(payload)
        content_type = serializer.content_type
    if content_type is not None and CONTENT_TYPE not in headers:
        headers[CONTENT_TYPE] = content_type
    return Message(body, key, headers)


def decode_body(serializer: Serializer, message: Message) -> Any:
    """The payload of ``message`` read as its content type says (see
    :func:`serializer_for`); raises MalformedMessage naming the cause."""
    serializer = serializer_for(message.headers.get(CONTENT_TYPE), serializer)
    try:
        return serializer.loads(message.body)
    except Exception as exc:
        what = getattr(serializer, "description", serializer.content_type)  # typed: the type
        cause = " ".join(str(exc).split())  # one line (validation errors span several)
        raise MalformedMessage(
            f"payload of message {message.id} does not decode as {what}: "
            f"{type(exc).__name__}: {cause}"
        ) from exc


# -- wire fields --------------------------------------------------------------------------
#
# A message is stored as ONE field ``m``: a JSON array ``[id, timestamp, key, headers]``,
# a newline, then the body bytes (JSON never contains a raw newline). One field keeps
# entries small and cheap to parse. Entries written by other producers may instead use
# separate fields: ``b`` (body, required), ``i`` (id), ``k`` (key), ``h`` (JSON headers),
# ``t`` (timestamp); the entry id stands in for a missing message id.
# The DLQ copy of an entry that could not be read keeps the entry's fields unchanged and
# adds one field ``troupe-dead``: the metadata array (with the reason in its headers).

_PACKED, _BODY, _KEY, _HEADERS, _ID, _TIME = b"m", b"b", b"k", b"h", b"i", b"t"
_DEAD = b"troupe-dead"
_PLAIN_ID = re.compile(r"[A-Za-z0-9_.:-]+")  # ids that need no JSON escaping
_PLAIN_TYPE = re.compile(r"[A-Za-z0-9/+.-]+")  # content types that need none
# the common metadata with its newline: ["<plain id>",<timestamp>,<null or a plain key>,
# <no headers, or only a plain content type (what a ProducerBridge writes)>]\n
_FAST_META = re.compile(
    rb'\["([A-Za-z0-9_.:-]+)",(-?[0-9][0-9.eE+-]*),(?:null|"([A-Za-z0-9_.:-]+)"),'
    rb'(?:null|\{"content-type":"([A-Za-z0-9/+.-]+)"\})\]\n'
)


#: the packed metadata's end for a plain content type: its headers, ``]`` and the newline
_TYPE_TAILS: dict[str, bytes] = {}


def _type_tail(content_type: str) -> bytes:
    """The tail for ``content_type`` (plain: no JSON escaping), kept for the next message
    (a few types are in use: the bound keeps odd producers from growing it)."""
    tail = f'{{"content-type":"{content_type}"}}]\n'.encode()
    if len(_TYPE_TAILS) < 64:
        _TYPE_TAILS[content_type] = tail
    return tail


def to_fields(message: Message) -> dict[bytes, bytes]:
    """The field mapping a message is stored as."""
    key, headers, message_id = message.key, message.headers, message.id
    if message.raw is not None:
        dead = [message_id, message.timestamp, key, headers or None]
        return {**message.raw, _DEAD: json.dumps(dead, separators=(",", ":")).encode()}
    if _PLAIN_ID.fullmatch(message_id) and (key is None or _PLAIN_ID.fullmatch(key)):
        # the common cases, without json.dumps (same bytes as the general case): no key
        # or a plain one, and no headers or only a plain content type (what a
        # ProducerBridge sends)
        packed_key = "null" if key is None else f'"{key}"'
        if not headers:
            meta = f'["{message_id}",{message.timestamp!r},{packed_key},null]'.encode()
            return {_PACKED: meta + b"\n" + message.body}
        if len(headers) == 1:
            content_type = headers.get(CONTENT_TYPE)
            tail = _TYPE_TAILS.get(content_type) if content_type is not None else None
            if tail is None and content_type is not None and _PLAIN_TYPE.fullmatch(content_type):
                tail = _type_tail(content_type)
            if tail is not None:
                meta = f'["{message_id}",{message.timestamp!r},{packed_key},'.encode()
                return {_PACKED: meta + tail + message.body}
    fields = [message_id, message.timestamp, key, headers or None]
    meta = json.dumps(fields, separators=(",", ":")).encode()
    return {_PACKED: meta + b"\n" + message.body}




def from_fields(fields: Mapping[bytes, bytes], fallback_id: str) -> Message:
    """Read a message back from its fields; raises MalformedMessage with the reason."""
    dead = fields.get(_DEAD)
    if dead is not None:
        raw = {k: v for k, v in fields.items() if k != _DEAD}
        message = unpack(dead + b"\n", fallback_id)
        message.raw = raw
        return message
    packed = fields.get(_PACKED)
    if packed is not None:
        return unpack(packed, fallback_id)
    body = fields.get(_BODY)
    if body is None:
        raise MalformedMessage(f"entry {fallback_id} has neither a 'm' nor a 'b' field")
    try:
        raw_id = fields.get(_ID)
        message_id = raw_id.decode() if raw_id is not None else fallback_id
        raw_key = fields.get(_KEY)
        key = raw_key.decode() if raw_key is not None else None
        raw_time = fields.get(_TIME)
        timestamp = float(raw_time) if raw_time is not None else 0.0
        raw_headers = fields.get(_HEADERS)
        headers = _headers(json.loads(raw_headers)) if raw_headers is not None else {}
    except (UnicodeDecodeError, ValueError) as exc:
        raise MalformedMessage(f"entry {fallback_id} has unreadable fields: {exc}") from exc
    return Message(body, key, headers, message_id, timestamp)


def unpack(packed: bytes, fallback_id: str) -> Message:
    """Read a message from its packed ``m`` field (what :func:`from_fields` does for an
    entry of that one field); raises MalformedMessage with the reason."""
    try:
        fast = _FAST_META.match(packed)
        if fast is not None:  # one regex call, no json.loads
            plain_id, stamp, key, content_type = fast.groups()
            headers = {} if content_type is None else {CONTENT_TYPE: content_type.decode()}
            return Message(
                packed[fast.end() :],
                None if key is None else key.decode(),
                headers,
                plain_id.decode(),
                float(stamp),
            )
        cut = packed.find(b"\n")
        if cut < 0:
            raise ValueError("no newline after the metadata")
        meta = json.loads(packed[:cut])
        if not isinstance(meta, list) or len(meta) != 4:
            raise ValueError("metadata is not [id, timestamp, key, headers]")
        message_id, timestamp, key, headers = meta
        if not isinstance(message_id, str) or not isinstance(timestamp, int | float):
            raise ValueError("id must be a string and timestamp a number")
        if key is not None and not isinstance(key, str):
            raise ValueError("key must be a string or null")
        return Message(
            packed[cut + 1 :], key, _headers(headers) if headers else {}, message_id, timestamp
        )
    except (UnicodeDecodeError, ValueError) as exc:
        raise MalformedMessage(f"entry {fallback_id} has unreadable fields: {exc}") from exc


def _headers(loaded: Any) -> dict[str, str]:
    if not isinstance(loaded, dict):
        raise ValueError("headers are not a JSON object")
    return {str(k): str(v) for k, v in loaded.items()}


__all__ = [
    "ATTEMPT",
    "BYTES",
    "CONTENT_TYPE",
    "DELIVERIES",
    "ENTRY_ID",
    "ERROR_REASON",
    "IDEMPOTENCY_KEY",
    "JSON",
    "KEY",
    "MESSAGE_ID",
    "ORIGINAL_ENTRY_ID",
    "ORIGINAL_GROUP",
    "ORIGINAL_OFFSET",
    "ORIGINAL_PARTITION",
    "ORIGINAL_STREAM",
    "STREAM",
    "TEXT",
    "TRACEPARENT",
    "BytesSerializer",
    "JsonSerializer",
    "MalformedMessage",
    "Message",
    "Serializer",
    "TextSerializer",
    "build_message",
    "decode_body",
    "from_fields",
    "new_id",
    "serializer_for",
    "to_fields",
    "unpack",
]
