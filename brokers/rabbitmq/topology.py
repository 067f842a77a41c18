"""RabbitMQ topology from configuration: exchanges, queues, bindings and routes.

A :class:`Topology` is plain data (build it in code or from a dict with
:meth:`Topology.from_dict`). The broker declares it on connect; declaring twice
with the same settings is harmless, and a queue or exchange that already
exists with other settings is a :class:`~troupe.ConfigError` naming it and the
differing argument (RabbitMQ answers ``406 PRECONDITION_FAILED``).

Streams map onto it like this: ``publish(stream, ...)`` goes to the stream's
route when :attr:`Topology.routes` has one (an exchange and a routing key,
``None`` = the message key), else to the default exchange with the stream's
name as routing key; ``consume(stream, ...)`` reads the queue named ``stream``.
Queues that the topology does not list are declared on first use with
:attr:`Topology.default_queue`'s kind and arguments.

Queue kinds: ``"quorum"`` (the default: replicated, durable, counts deliveries
in ``x-delivery-count``, which the bridge's broker-count backstop needs, and
``x-delivery-limit`` dead-letters a message the consumers never settle) or
``"classic"`` (one node, lighter; redeliveries are a flag only, so the
backstop sees at most 2).
"""

from __future__ import annotations

import logging
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from troupe.errors import ConfigError

logger = logging.getLogger(__name__)

ExchangeType = Literal["direct", "topic", "fanout", "headers"]
QueueKind = Literal["quorum", "classic"]
EXCHANGE_TYPES = ("direct", "topic", "fanout", "headers")
QUEUE_KINDS = ("quorum", "classic")
DEFAULT_DELIVERY_LIMIT = 100  # x-delivery-limit of quorum queues: a backstop far above the bridge's


@dataclass(frozen=True, slots=True)
class Exchange:
    """An exchange to declare (always durable)."""

    name: str
    type: ExchangeType = "direct"
    arguments: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not self.name:
            raise ConfigError("exchange", "an exchange needs a name (the default exchange exists)")
        if self.type not in EXCHANGE_TYPES:
            raise ConfigError(
                f"exchange {self.name!r} type",
                f"must be one of {', '.join(EXCHANGE_TYPES)}, got {self.type!r}",
            )


@dataclass(frozen=True, slots=True)
class Queue:
    """A durable queue to declare; ``arguments`` are AMQP ``x-`` arguments."""

    name: str
    kind: QueueKind = "quorum"
    arguments: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not self.name:
            raise ConfigError("queue", "a queue needs a name")
        if self.kind not in QUEUE_KINDS:
            raise ConfigError(
                f"queue {self.name!r} kind", f"must be 'quorum' or 'classic', got {self.kind!r}"
            )


@dataclass(frozen=True, slots=True)
class Binding:
    """Bind ``queue`` to ``exchange`` with ``routing_key`` (and header ``arguments``)."""

    exchange: str
    queue: str
    routing_key: str = ""
    arguments: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Route:
    """Where ``publish(stream)`` goes: ``exchange`` with ``routing_key`` (None: the message key)."""

    exchange: str
    routing_key: str | None = ""


@dataclass(frozen=True, slots=True)
class Topology:
    """What the broker declares, and where each stream publishes.

    >>> t = Topology.from_dict({
    ...     "exchanges": [{"name": "orders", "type": "topic"}],
    ...     "queues": [{"name": "billing"}],
    ...     "bindings": [{"exchange": "orders", "queue": "billing", "routing_key": "order.*"}],
    ...     "routes": {"orders": {"exchange": "orders", "routing_key": None}},
    ... })
    >>> t.route("orders"), t.route("billing")
    (Route(exchange='orders', routing_key=None), Route(exchange='', routing_key='billing'))
    """

    exchanges: tuple[Exchange, ...] = ()
    queues: tuple[Queue, ...] = ()
    bindings: tuple[Binding, ...] = ()
    routes: Mapping[str, Route] = field(default_factory=dict)
    default_queue: Queue = field(default_factory=lambda: Queue("*"))
    delivery_limit: int | None = DEFAULT_DELIVERY_LIMIT

    def __post_init__(self) -> None:
        names = {e.name for e in self.exchanges}
        for binding in self.bindings:
            if binding.exchange not in names:
                raise ConfigError(
                    "bindings", f"binding to exchange {binding.exchange!r}: no such exchange"
                )
        for stream, route in self.routes.items():
            if route.exchange and route.exchange not in names:
                raise ConfigError(f"routes[{stream!r}]", f"no exchange {route.exchange!r}")
        if self.delivery_limit is not None and self.delivery_limit < 1:
            raise ConfigError("delivery_limit", f"must be at least 1, got {self.delivery_limit}")

    @classmethod
    def from_dict(cls, config: Mapping[str, Any]) -> Topology:
        """A topology from plain data (e.g. a parsed TOML/YAML file)."""
        try:
            return cls(
                exchanges=tuple(Exchange(**e) for e in config.get("exchanges", ())),
                queues=tuple(Queue(**q) for q in config.get("queues", ())),
                bindings=tuple(Binding(**b) for b in config.get("bindings", ())),
                routes={k: Route(**v) for k, v in config.get("routes", {}).items()},
                default_queue=Queue("*", **config.get("default_queue", {})),
                delivery_limit=config.get("delivery_limit", DEFAULT_DELIVERY_LIMIT),
            )
        except TypeError as exc:
            raise ConfigError("topology", str(exc)) from exc

    def route(self, stream: str) -> Route:
        """Where ``publish(stream)`` goes."""
        return self.routes.get(stream) or Route("", stream)

    def queue(self, name: str) -> Queue:
        """The queue ``name`` as configured (or with the default kind and arguments)."""
        for queue in self.queues:
            if queue.name == name:
                return queue
        return Queue(name, self.default_queue.kind, self.default_queue.arguments)

    def queue_arguments(
        self, queue: Queue, dead_letter_queue: str | None, maxlen: int | None = None
    ) -> dict[str, Any]:
        """The ``x-`` arguments a work queue is declared with."""
        args: dict[str, Any] = {"x-queue-type": queue.kind}
        if maxlen is not None:
            args["x-max-length"] = maxlen
        if dead_letter_queue is not None:
            args["x-dead-letter-exchange"] = ""
            args["x-dead-letter-routing-key"] = dead_letter_queue
        if queue.kind == "quorum" and self.delivery_limit is not None:
            args["x-delivery-limit"] = self.delivery_limit
        args.update(queue.arguments)
        return args


_INEQUIVALENT = re.compile(r"inequivalent arg '([^']+)' for (queue|exchange) '([^']*)'")


def declaration_error(what: str, name: str, code: int, text: str) -> ConfigError | None:
    """A ConfigError for a 406 PRECONDITION_FAILED reply (None for other replies)."""
    if code != 406:
        return None
    match = _INEQUIVALENT.search(text)
    if match:
        argument, kind, found = match.groups()
        return ConfigError(
            f"{kind} {found!r} argument {argument!r}",
            f"already declared with other settings on the broker: {text}",
        )
    return ConfigError(f"{what} {name!r}", f"conflicts with the broker's declaration: {text}")


__all__ = [
    "DEFAULT_DELIVERY_LIMIT",
    "Binding",
    "Exchange",
    "Queue",
    "Route",
    "Topology",
    "declaration_error",
]
