"""RabbitMQ (pika): queues with prefetch, broker redelivery and publisher confirms.

``connect("amqp://...")`` returns a :class:`RabbitBroker`; a :class:`Topology`
(exchanges, queues, bindings, routes) says where streams publish and consume.
The modules: ``broker``, ``connection`` (a pika connection on its own thread),
``session`` (a consumer: push buffer, acks, the attempts record), ``publish``
(confirmed publishing, delay tiers), ``topology``.
"""

from .broker import RabbitBroker
from .topology import Binding, Exchange, Queue, Route, Topology

__all__ = ["Binding", "Exchange", "Queue", "RabbitBroker", "Route", "Topology"]
