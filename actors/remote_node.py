"""``RemoteNode``: one actor system's presence on one broker (its inbox, exports, views).

- **Inbox**: a broadcast topic (:mod:`troupe.brokers.tail`) per node,
  ``troupe.inbox.<node id>``, read by one tail. It carries replies (matched by
  correlation id), asks to this node's exported actors, and tells / asks to
  actors whose refs travelled in messages. At most once; nothing is stored.
- **Exports**: a name's told messages go to the stream ``troupe.remote.<name>``;
  each member consumes it with a :class:`~troupe.brokers.ConsumerBridge` in the
  group ``troupe.remote.<name>`` (competing consumers, at least once, attempts
  counted, DLQ); :class:`ExportBridge` hands each message over with its sender.
- **Membership**: see :mod:`troupe.actors.remote_members`; heartbeats go on
  ``troupe.members.<name>``.

Wire format (JSON with refs, never pickle): :mod:`troupe.actors.remote_wire`.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import itertools
import json
import logging
import os
import re
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from troupe import Actor, ActorRef, ActorSystem, AskTimeout, Backoff, BackoffState, SystemClosed
from troupe.brokers import Broker, BrokerError, Message, ProducerBridge, Publish
from troupe.brokers.message import CONTENT_TYPE
from troupe.errors import ConfigError
from troupe.mailbox import Accepted

from .remote_errors import LeaseExpired, MemberLost, NoMembers, RemoteError
from .remote_members import Members
from .remote_ref import RemoteRef
from .remote_wire import TOLD_HEADERS, TOLD_TYPE, ExportBridge, RefCodec, RemoteCodec, type_name

logger = logging.getLogger(__name__)

INBOX = "troupe.inbox."
MEMBERS = "troupe.members."
STREAM = "troupe.remote."
RECONNECT = Backoff(initial=0.1, maximum=5.0, multiplier=2.0, jitter="equal")


def stream_of(name: str) -> str:
    """The stream (and group) of an exported name's told messages."""
    return STREAM + name


@dataclass(slots=True)
class PendingAsk:
    """An ask waiting for its reply: where it went, and how to send it again."""

    future: asyncio.Future[Any]
    target: RemoteRef
    body: bytes
    member: str | None
    idempotent: bool
    tried: frozenset[str] = frozenset()  # members tried before ``member``


class NodeRunner(Actor):
    """Owns a node's tasks: started with the actor, closed when the system shuts down."""

    def __init__(self, node: RemoteNode) -> None:
        self.node = node

    def on_start(self) -> None:
        self.node.start_tasks()

    async def on_stop(self) -> None:
        await self.node.close()


class RemoteNode:
    """An actor system's inbox, exports and membership views on one broker.

    Use :func:`troupe.actors.remote` and :func:`troupe.actors.export`; they make
    one node per (system, broker). ``heartbeat`` is the seconds between a member's
    heartbeats; a member is dead after ``missed`` heartbeats without one.
    """

    def __init__(
        self,
        system: ActorSystem,
        broker: Broker,
        *,
        heartbeat: float = 1.0,
        missed: int = 3,
    ) -> None:
        if not heartbeat > 0:
            raise ConfigError(
                "heartbeat", f"must be a positive number of seconds, got {heartbeat!r}"
            )
        if missed < 2:
            raise ConfigError("missed", f"must be at least 2, got {missed!r}")
        self.system = system
        self.broker = broker
        label = re.sub(r"[^A-Za-z0-9_-]", "_", system.name)  # a legal topic / queue name
        self.id = f"{label}-{os.getpid()}-{uuid.uuid4().hex[:8]}"
        self.inbox = INBOX + self.id
        #: told messages carry their sender as the key only where order is per key (Kafka):
        #: a stream-ordered broker keeps every sender's order in the name's one stream
        self.keyed = broker.capabilities.ordering == "key"
        self._own_key = self._key_of(None)
        self.heartbeat = heartbeat
        self.lease = heartbeat * missed
        self.loop = asyncio.get_running_loop()
        self.exports: dict[str, ActorRef] = {}
        #: names this node holds a lease on without serving an actor (see :meth:`join`)
        self.joined: set[str] = set()
        self.views: dict[str, Members] = {}
        self.pending: dict[str, PendingAsk] = {}
        self._export_actors: dict[str, list[ActorRef]] = {}
        self._corr = itertools.count()
        self._outbox: list[tuple[str, Message]] = []
        self._outbox_ready = asyncio.Event()
        self._ready: asyncio.Future[None] = self.loop.create_future()
        self._tasks: list[asyncio.Task[None]] = []
        self._closed = False
        self.codec = RefCodec(self)
        self.producer = system.spawn(ProducerBridge, broker, name=f"troupe.remote.out.{self.id}")
        self.runner = system.spawn(NodeRunner, self, name=f"troupe.remote.{self.id}")

    def check_options(self, **options: Any) -> None:
        """Raise ConfigError when ``options`` differ from the ones this node runs with."""
        running = {"heartbeat": self.heartbeat, "missed": round(self.lease / self.heartbeat)}
        for setting, value in options.items():
            if setting not in running:
                raise ConfigError(setting, "not a remote node setting (heartbeat, missed)")
            if value != running[setting]:
                raise ConfigError(
                    setting,
                    f"the remote node of system {self.system.name!r} on {self.broker.url} "
                    f"already runs with {setting}={running[setting]!r}; set it on first use",
                )

    def _key_of(self, sender: str | None) -> str:
        """The key of this node's told messages from ``sender``: stable while the node
        runs, so one sender's messages share a partition; four characters, as the client
        hashes every key it produces (aiokafka: murmur2 in Python, ~1.5 us per 4 bytes)."""
        return format(hash((self.id, sender)) & 0xFFFF, "04x")

    # -- sending ---------------------------------------------------------------------------

    def tell(
        self,
        target: RemoteRef,
        message: Any,
        sender: ActorRef | RemoteRef | None,
        headers: dict[str, str] | None,
    ) -> Accepted | asyncio.Future[None]:
        """Tell ``target``: through its stream (exported) or its system's inbox. Raises
        SystemClosed once this node is closed: nothing leaves it any more, and a message
        dropped without a word would look delivered (a handler telling it fails instead, so
        a bridge delivers its message again)."""
        if self._closed:
            raise SystemClosed(f"the remote node of system {self.system.name!r} is closed")
        if target.export is not None:
            body = self.codec.encode({"p": message, "s": sender})
            key = None
            if self.keyed:
                key = self._own_key if sender is None else self._key_of(sender.name)
            told = {**headers, CONTENT_TYPE: TOLD_TYPE} if headers else TOLD_HEADERS
            publish = Publish(body, stream=stream_of(target.export), key=key, headers=told)
            return self.producer.tell(publish)
        body = self.codec.encode({"k": "t", "a": target.actor, "p": message, "s": sender})
        self.send(target.inbox or "", body)
        done: asyncio.Future[None] = self.loop.create_future()
        done.set_result(None)
        return done

    def request(
        self,
        target: RemoteRef,
        message: Any,
        sender: ActorRef | RemoteRef | None,
        timeout: float | None,
    ) -> bytes:
        """The body of an ask to ``target`` (raises TypeError when the message is not JSON)."""
        data: dict[str, Any] = {"k": "a", "r": self.inbox, "p": message, "s": sender}
        if target.export is not None:
            data["e"] = target.export
        else:
            data["a"] = target.actor
        if timeout is not None:
            data["t"] = timeout
        return self.codec.encode(data)

    def start_ask(
        self, target: RemoteRef, body: bytes, timeout: float | None, *, idempotent: bool
    ) -> asyncio.Future[Any]:
        """Send the ask ``body`` to ``target`` (a live member of it); the reply's future.

        Once the node is ready and a member is known, no task is made: the future is
        failed with AskTimeout by the system's ask deadlines."""
        if not self._closed and self._ready.done():
            if target.export is None:
                return self._send_ask(target, body, target.inbox or "", None, idempotent, timeout)
            chosen = self.view(target.export).pick()
            if chosen is not None:
                return self._send_ask(target, body, chosen.inbox, chosen.id, idempotent, timeout)
        return self.loop.create_task(self._first_ask(target, body, timeout, idempotent))

    async def _first_ask(
        self, target: RemoteRef, body: bytes, timeout: float | None, idempotent: bool
    ) -> Any:
        """An ask that waits for the node's inbox, or to learn the members, first."""
        try:
            async with asyncio.timeout(timeout):
                if self._closed:
                    raise SystemClosed(f"the remote node of system {self.system.name!r} is closed")
                if not self._ready.done():
                    await asyncio.shield(self._ready)
                if target.export is None:
                    inbox, member = target.inbox or "", None
                else:
                    view = self.view(target.export)
                    chosen = view.pick()
                    if chosen is None:
                        await view.wait_settled(self.loop)
                        chosen = view.pick()
                        if chosen is None:
                            raise NoMembers(target.export, self.broker.url)
                    inbox, member = chosen.inbox, chosen.id
                return await self._send_ask(target, body, inbox, member, idempotent, None)
        except TimeoutError:
            assert timeout is not None
            raise AskTimeout(target.name, timeout) from None

    def _send_ask(
        self,
        target: RemoteRef,
        body: bytes,
        inbox: str,
        member: str | None,
        idempotent: bool,
        timeout: float | None,
    ) -> asyncio.Future[Any]:
        corr = str(next(self._corr))
        future: asyncio.Future[Any] = self.loop.create_future()
        # the correlation id goes in front of the body: {"c":"7", + the rest of the request
        body = b'{"c":"' + corr.encode() + b'",' + body[1:]
        self.pending[corr] = PendingAsk(future, target, body, member, idempotent)
        self.send(inbox, body)
        if timeout is not None:
            self.system.ask_deadlines.add(future, target.name, timeout)
        return future

    def expect_reply(self, name: str) -> tuple[str, asyncio.Future[Any]]:
        """A correlation id and the future its reply to this node's inbox resolves (a
        ``RemoteError`` when the reply is an error); for requests that travel some other
        way than :meth:`start_ask` (an entity's shard). Cancel the future to give up."""
        corr = str(next(self._corr))
        future: asyncio.Future[Any] = self.loop.create_future()
        self.pending[corr] = PendingAsk(future, RemoteRef(self, export=name), b"", None, False)
        return corr, future

    async def ready(self) -> None:
        """Wait until this node's inbox is read (replies sent to it from now on arrive)."""
        if self._closed:
            raise SystemClosed(f"the remote node of system {self.system.name!r} is closed")
        await asyncio.shield(self._ready)

    def send(self, topic: str, body: bytes) -> None:
        """Queue ``body`` for ``topic``'s tails; the outbox task sends in order, batched."""
        self._outbox.append((topic, Message(body, None, {}, "", 0.0)))
        self._outbox_ready.set()

    # -- exports and views -----------------------------------------------------------------

    async def export(self, ref: ActorRef, name: str, **bridge_options: Any) -> None:
        """Serve ``name`` with ``ref`` from this node (see :func:`troupe.actors.export`)."""
        if not isinstance(name, str) or not name or any(c.isspace() for c in name):
            raise ConfigError("name", f"must be a non-empty name without spaces, got {name!r}")
        if name in self.exports:
            raise ConfigError("name", f"{name!r} is already exported by this system")
        if not ref.is_alive:
            raise ConfigError("ref", f"{ref!r} has stopped: export a running actor")
        bridge_options.setdefault("consumer", self.id)
        bridge = self.system.spawn(
            ExportBridge,
            self.broker,
            stream_of(name),
            stream_of(name),
            ref,
            serializer=RemoteCodec(self.codec),
            name=f"troupe.export.{name}.{self.id}",
            **bridge_options,
        )
        self.exports[name] = ref
        self._export_actors[name] = [bridge]
        self.view(name)
        self.system.watch(ref, lambda _: self._unexport_soon(name, ref))
        await asyncio.shield(self._ready)
        self._heartbeat_now(name)

    def _unexport_soon(self, name: str, ref: ActorRef) -> None:
        if self.exports.get(name) == ref and not self._closed:
            self.loop.create_task(self.unexport(name))

    async def unexport(self, name: str) -> None:
        """Stop serving ``name`` from this node: say ``down``, stop its bridge and gate."""
        if self.exports.pop(name, None) is None:
            return
        await self._say_down([name])
        for actor in self._export_actors.pop(name, []):
            await actor.stop()

    async def join(self, name: str) -> None:
        """Hold a membership lease on ``name`` without serving it: other nodes see this node
        among ``name``'s members (e.g. a cluster's) and watch it, as for an export."""
        if not isinstance(name, str) or not name or any(c.isspace() for c in name):
            raise ConfigError("name", f"must be a non-empty name without spaces, got {name!r}")
        self.joined.add(name)
        self.view(name)
        await asyncio.shield(self._ready)
        self._heartbeat_now(name)

    async def leave(self, name: str) -> None:
        """Give up the lease :meth:`join` took (its members hear ``down``)."""
        if name in self.joined:
            self.joined.discard(name)
            await self._say_down([name])

    def _leased(self) -> list[str]:
        return [*self.exports, *self.joined]

    def view(self, name: str) -> Members:
        """The membership view of ``name`` (its tail opens on first use)."""
        view = self.views.get(name)
        if view is None:
            view = self.views[name] = Members(name, float("inf"))
            self._tasks.append(
                self.loop.create_task(self._guard(f"members of {name}", self._view_loop, view))
            )
        return view

    def watch(self, target: RemoteRef, notify: Callable[[BaseException | None], Any]) -> None:
        """Call ``notify(reason)`` once ``target``'s name has no live member."""
        if target.export is None:
            raise ConfigError("ref", f"only exported names can be watched, not {target!r}")
        view = self.view(target.export)
        view.watch(notify)
        view.notify_if_empty(self.loop.time())

    # -- tasks -----------------------------------------------------------------------------

    def start_tasks(self) -> None:
        """Start the inbox, outbox and heartbeat tasks (the runner actor's on_start)."""
        create = self.loop.create_task
        self._tasks += [
            create(self._guard("inbox", self._inbox_loop)),
            create(self._guard("outbox", self._outbox_loop)),
            create(self._guard("heartbeat", self._tick_loop)),
        ]

    async def _guard(self, what: str, loop: Callable[..., Any], *args: Any) -> None:
        """Run ``loop`` again after broker errors, backing off; logs once per outage."""
        backoff = BackoffState(RECONNECT)
        failing = False
        while not self._closed:
            try:
                await loop(*args)
                return
            except BrokerError as exc:
                if not failing:
                    logger.warning(
                        "remote node %s: %s failed on %s: %s", self.id, what, self.broker.url, exc
                    )
                failing = True
                await asyncio.sleep(backoff.next_delay(self.loop.time()))

    async def _inbox_loop(self) -> None:
        tail = await self.broker.tail(self.inbox)
        if not self._ready.done():
            self._ready.set_result(None)
        try:
            while not self._closed:
                for message in await tail.fetch(1.0):
                    self._on_inbox(message.body)
        finally:
            await tail.close()

    async def _outbox_loop(self) -> None:
        while not self._closed:
            await self._outbox_ready.wait()
            self._outbox_ready.clear()
            items, self._outbox = self._outbox, []
            start = 0
            while start < len(items):
                topic = items[start][0]
                end = start + 1
                while end < len(items) and items[end][0] == topic:
                    end += 1
                batch = items[start:end]
                try:  # queued in order; the acks of a batch need not come before the next
                    sent = await self.broker.broadcast_queued(topic, [m for _, m in batch])
                except BrokerError as exc:
                    self._send_failed(batch, exc)
                else:
                    if sent.done():
                        self._sent(batch, sent)
                    else:
                        sent.add_done_callback(functools.partial(self._sent, batch))
                start = end

    def _sent(self, items: list[tuple[str, Message]], done: asyncio.Future[None]) -> None:
        """A batch's broadcast ended: when it failed, so do the asks it carried."""
        exc = None if done.cancelled() else done.exception()
        if isinstance(exc, BrokerError):
            self._send_failed(items, exc)
        elif exc is not None:
            logger.error(
                "remote node %s: sending %d message(s) failed", self.id, len(items), exc_info=exc
            )

    def _send_failed(self, items: list[tuple[str, Message]], exc: BrokerError) -> None:
        logger.warning("remote node %s: sending %d message(s) failed: %s", self.id, len(items), exc)
        bodies = {message.body for _, message in items}
        for pending in list(self.pending.values()):
            if pending.body in bodies and not pending.future.done():
                pending.future.set_exception(exc)

    async def _view_loop(self, view: Members) -> None:
        tail = await self.broker.tail(MEMBERS + view.name)
        try:
            view.settle_at = min(view.settle_at, self.loop.time() + self.heartbeat)
            view.changed.set()
            self.send(MEMBERS + view.name, self.codec.encode({"k": "probe"}))
            while not self._closed:
                for message in await tail.fetch(1.0):
                    self._on_membership(view, message.body)
        finally:
            await tail.close()

    async def _tick_loop(self) -> None:
        tick = self.heartbeat / 4
        next_beat = self.loop.time()
        while not self._closed:
            now = self.loop.time()
            if now >= next_beat:
                next_beat = now + self.heartbeat
                for name in self._leased():
                    self._heartbeat_now(name)
            for corr in [c for c, p in self.pending.items() if p.future.done()]:
                del self.pending[corr]  # timed out: a late reply finds nothing
            for view in list(self.views.values()):
                gone = view.expire(now)
                for member in gone:
                    self._member_gone(view, member.id, member.leaving)
                crashed = [m.id for m in gone if not m.leaving]
                if crashed and not view.live():  # the last live member was lost, not left
                    view.last_gone = LeaseExpired(view.name, crashed[-1])
                view.notify_if_empty(now)
            await asyncio.sleep(tick)

    # -- incoming --------------------------------------------------------------------------

    def _on_membership(self, view: Members, body: bytes) -> None:
        try:
            data = json.loads(body)
            kind = data["k"]
            if kind == "up":
                view.heartbeat(str(data["m"]), str(data["i"]), float(data["l"]), self.loop.time())
            elif kind == "down":
                view.leave(str(data["m"]), self.loop.time())
            elif kind == "probe" and (view.name in self.exports or view.name in self.joined):
                self._heartbeat_now(view.name)
        except (ValueError, KeyError, TypeError) as exc:
            logger.warning(
                "remote node %s: ignored a malformed heartbeat on %s: %s", self.id, view.name, exc
            )

    def _heartbeat_now(self, name: str) -> None:
        up = {"k": "up", "m": self.id, "i": self.inbox, "l": self.lease}
        self.send(MEMBERS + name, self.codec.encode(up))

    def _member_gone(self, view: Members, member: str, left: bool) -> None:
        """``member`` of ``view`` is gone: its asks fail, or go to another member."""
        for corr, pending in list(self.pending.items()):
            if pending.member != member or pending.target.export != view.name:
                continue
            if pending.future.done():
                continue
            if pending.idempotent:
                tried = pending.tried | {member}
                other = view.pick(tried)
                if other is not None:
                    pending.member = other.id
                    pending.tried = tried
                    self.send(other.inbox, pending.body)
                    continue
            del self.pending[corr]
            pending.future.set_exception(MemberLost(view.name, member, pending.idempotent))

    def _on_inbox(self, body: bytes) -> None:
        try:
            data = self.codec.decode(body)
            kind = data["k"]
            if kind == "r":
                self._on_reply(data)
            elif kind == "a":
                self._serve_ask(data)
            elif kind == "t":
                self._serve_tell(data)
            else:
                raise ValueError(f"unknown kind {kind!r}")
        except Exception as exc:
            logger.warning(
                "remote node %s: dropped a malformed inbox message (%s): %.200r", self.id, exc, body
            )

    def _on_reply(self, data: dict[str, Any]) -> None:
        pending = self.pending.pop(str(data["c"]), None)
        if pending is None or pending.future.done():
            return  # the asker gave up (timeout) or another member answered first
        error = data.get("x")
        if error is not None:
            pending.future.set_exception(
                RemoteError(pending.target.name, str(error[0]), str(error[1]))
            )
        else:
            pending.future.set_result(data.get("v"))

    def _target(self, data: dict[str, Any]) -> tuple[str, ActorRef | None]:
        if "e" in data:
            name = str(data["e"])
            return name, self.exports.get(name)
        name = str(data["a"])
        return name, self.system.find(name)

    def _serve_ask(self, data: dict[str, Any]) -> None:
        corr, reply_to = str(data["c"]), str(data["r"])
        name, target = self._target(data)
        if target is None:
            self.reply_error(reply_to, corr, "troupe.ActorNotFound", f"no actor {name!r} here")
            return
        timeout = data.get("t")
        sender: Any = data.get("s")
        try:
            future = target.ask(data["p"], timeout=timeout, sender=sender)
        except Exception as exc:  # refused at once (MailboxFull, ...)
            self.reply_error(reply_to, corr, type_name(exc), str(exc))
            return
        future.add_done_callback(lambda done: self._reply(reply_to, corr, done))

    def _reply(self, reply_to: str, corr: str, done: asyncio.Future[Any]) -> None:
        if done.cancelled():
            self.reply_error(reply_to, corr, "asyncio.CancelledError", "the ask was cancelled")
            return
        exc = done.exception()
        if exc is not None:
            self.reply_error(reply_to, corr, type_name(exc), str(exc))
            return
        self.reply(reply_to, corr, done.result())

    def reply(self, reply_to: str, corr: str, value: Any) -> None:
        """Send ``value`` as the reply ``corr`` to the inbox ``reply_to`` (a value that is
        not JSON is replied as a TypeError)."""
        try:
            body = self.codec.encode({"k": "r", "c": corr, "v": value})
        except (TypeError, ValueError) as error:
            self.reply_error(reply_to, corr, "TypeError", f"the reply is not JSON: {error}")
            return
        self.send(reply_to, body)

    def reply_error(self, reply_to: str, corr: str, kind: str, text: str) -> None:
        """Reply ``corr`` with an error: the asker raises ``RemoteError(kind, text)``."""
        self.send(reply_to, self.codec.encode({"k": "r", "c": corr, "x": [kind, text]}))

    def _serve_tell(self, data: dict[str, Any]) -> None:
        name, target = self._target(data)
        if target is None:
            logger.warning("remote node %s: a tell to %r found no such actor", self.id, name)
            return
        sender: Any = data.get("s")
        target.tell(data["p"], sender=sender)

    # -- closing ---------------------------------------------------------------------------

    async def _say_down(self, names: list[str]) -> None:
        for name in names:
            down = self.codec.encode({"k": "down", "m": self.id})
            with contextlib.suppress(BrokerError):
                await self.broker.broadcast(MEMBERS + name, [Message(down, None, {}, "", 0.0)])

    async def close(self, *, leave: bool = True) -> None:
        """Leave every exported name, stop the tasks, fail the asks still waiting.

        ``leave=False`` says no ``down``: the other nodes find the exports gone when
        their leases expire, as after a crash (tests use it to simulate one)."""
        if self._closed:
            return
        if leave:
            await self._say_down(self._leased())
        self._closed = True
        self.exports.clear()
        self.joined.clear()
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        self._tasks.clear()
        closed = SystemClosed(f"actor system {self.system.name!r} is shutting down")
        for pending in self.pending.values():
            if not pending.future.done():
                pending.future.set_exception(closed)
        self.pending.clear()
        if not self._ready.done():
            self._ready.set_exception(closed)
            self._ready.exception()  # retrieved: nobody may be waiting


__all__ = [
    "NodeRunner",
    "PendingAsk",
    "RemoteNode",
    "stream_of",
]
