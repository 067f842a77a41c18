"""Counting handler starts exactly and cheaply: a memory-mapped journal per consumer.

The contract counts an attempt when a handler *starts*, durably: a message
fetched but never started loses nothing, and a message whose handler kills the
process (``os._exit``, kill -9, OOM) loses one, so a poison message reaches the
DLQ after exactly ``max_deliveries`` starts even if every start kills its
consumer. The ways to keep that count, and why this one:

- an awaited write to the broker before every start is exact, but costs a round
  trip per message and would sink throughput;
- counting a fetched batch before it starts over-counts the unstarted part at
  every crash: a crash loop dead-letters healthy messages (the bug this fixes);
- the broker's own delivery count (Redis PEL count) grows with every claim, not
  with every start: the same over-count.

So a start is written synchronously into a small memory-mapped file, the
consumer's :class:`Journal` (a slot per started, unsettled entry, numbered per
start: a few microseconds, no system call). The page cache belongs to the kernel, so a
kill -9 of the consumer loses nothing written (a power loss may: the journal is
not fsynced). Each live consumer holds an ``fcntl.flock`` on its journal. A
session that opens (and every takeover cycle, ``claim_idle / 2``) folds the
journals of dead consumers — those whose lock it can take — into the broker's
durable *attempts record* (Redis: one hash per stream and group, HINCRBY per
entry, only for entries still pending), then deletes them. A failure seen
in-process is added to the record before the retry is scheduled, then its slot
is cleared (the last one allowed goes to the DLQ with its slot still there); the
record field is removed with the ack or the DLQ move. Each
start is added under a marker (journal incarnation + start number, SET NX with
a TTL), so a start is counted once even when the consumer dies between adding
a failure and clearing its slot, or a folder dies half-way. A delivery's
attempts are therefore ``record + starts still journaled``, exactly.

Folding happens under the directory's *fold lock* (:func:`fold_lock`, a flock
that kill -9 releases): a session that folds while another one is folding waits
for it, so it reads the record only after the other's starts are in it. Kafka
reads its record and folds under that lock at every assignment, so the owner of
a partition never keeps a count read before a dead member's starts were folded
by another member of the host.

Journals are host-local: they live in a directory per (broker, stream, group),
``<tempdir>/troupe-attempts/<hash of URL as written, stream, group>`` under
``journal_dir`` (default: the temp dir); consumers of a group on one host share
it when they spell the broker URL alike (or set the same ``journal_dir`` base
and URL).
A consumer that dies on one host and never comes back leaves its last starts
uncounted there; for that case the bridge also dead-letters an entry whose
broker delivery count exceeds ``max_broker_deliveries`` (4 x
``max_deliveries`` by default) — counting only the earlier deliveries this host
cannot account for (``Delivery.accounted``). A crash raises the broker count of
everything the dead consumer held (RabbitMQ: every message of its channel, the
whole prefetch window, some of it still unread in the socket; Redis: every
pending entry, at the next claim), most of it never started. So folding
reports every dead journal it folds (``ended``, once per journal incarnation),
a session closed holding deliveries reports itself, and the broker keeps those
*ends* (RabbitMQ: in its host-local record; Redis: a sorted set
``<stream>:ends:<group>``): each end explains at most one delivery of each
message published before it (:func:`account`). A crash loop therefore never
dead-letters a message that never ran, while the deliveries of a host that
never came back (nobody folds its journals) still reach the backstop.
"""

from __future__ import annotations

import asyncio
import bisect
import contextlib
import fcntl
import hashlib
import logging
import mmap
import os
import struct
import tempfile
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from pathlib import Path

from .session import AttemptLog, Delivery

logger = logging.getLogger(__name__)

MAGIC = b"TRPJRNL2"
HEADER = 64  # magic (8) + incarnation uuid (16) + reserved
SLOT = 128  # count (1 byte) + key length (1 byte) + start number (4 bytes) + key (122 bytes)
KEY_AT = 6
_HEADS: dict[int, struct.Struct] = {}  # key length -> "<BI{n}s": length, start number, key
MAX_KEY = SLOT - KEY_AT
SUFFIX = ".journal"

#: One start (or a few of one entry) to count: (entry key, count, marker).
Start = tuple[str, int, str]
#: ``record(starts, done)``: add each start to the durable record at most once per marker;
#: ``done`` are markers of earlier starts whose journal slot is gone (they may be deleted).
RecordAdd = Callable[[Sequence[Start], Sequence[str]], Awaitable[object]]
#: ``ended(incarnation)``: a consumer's journal was folded (it died or closed unsettled).
RecordEnded = Callable[[str], Awaitable[object]]
FOLD_LOCK = "fold.lock"
ENDS_KEPT = 7 * 24 * 3600.0  # seconds a session's end is kept (older messages: not accounted)
ENDS_SKEW = 60.0  # seconds a publisher's clock may be ahead: ends that early still count
FOLD_WAIT = 10.0  # seconds a folder waits for another one to finish before folding anyway


def journal_directory(base: str | os.PathLike[str] | None, *parts: str) -> Path:
    """The journal directory of one (broker, stream, group): ``base`` or the temp dir."""
    root = Path(base) if base is not None else Path(tempfile.gettempdir()) / "troupe-attempts"
    digest = hashlib.sha256("\0".join(parts).encode()).hexdigest()[:20]
    return root / digest


class Journal:
    """One consumer's journal file: the entries it started and has not settled.

    >>> import tempfile
    >>> j = Journal.create(Path(tempfile.mkdtemp()), "c1")
    >>> j.add("1-0"); j.add("1-0"); j.add("2-0"); j.remove("2-0")
    >>> [(key, count) for key, count, _ in read_journal(j.path)]
    [('1-0', 2)]
    >>> j.close()
    """

    def __init__(self, path: Path, fd: int, incarnation: str, slots: int) -> None:
        self.path = path
        self.incarnation = incarnation
        self._fd = fd
        self._slots = slots
        self._map = mmap.mmap(fd, HEADER + slots * SLOT)
        self._index: dict[str, int] = {}
        self._free = list(range(slots - 1, -1, -1))
        self._seq = 0
        self._closed = False

    @classmethod
    def create(cls, directory: Path, consumer: str, slots: int = 64) -> Journal:
        """A new, locked journal in ``directory`` (made if missing)."""
        directory.mkdir(parents=True, exist_ok=True)
        incarnation = uuid.uuid4().hex
        safe = "".join(c if c.isalnum() or c in "-_." else "_" for c in consumer)[:60]
        final = directory / f"{safe}-{os.getpid()}-{incarnation[:8]}{SUFFIX}"
        staging = final.with_suffix(".tmp")  # folders never look at it
        fd = os.open(staging, os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            os.ftruncate(fd, HEADER + slots * SLOT)
            os.pwrite(fd, MAGIC + uuid.UUID(incarnation).bytes, 0)
            os.rename(staging, final)
        except BaseException:
            os.close(fd)
            with contextlib.suppress(OSError):
                os.unlink(staging)
            raise
        return cls(final, fd, incarnation, slots)

    def add(self, key: str) -> None:
        """Count one start of ``key`` (a few microseconds; survives kill -9)."""
        slot = self._index.get(key)
        if slot is not None:
            m = self._map
            at = HEADER + slot * SLOT
            m[at] = min(255, m[at] + 1)
            return
        data = key.encode()
        size = len(data)
        if size > MAX_KEY:
            logger.warning("entry id %r is too long for the attempts journal; not counted", key)
            return
        if not self._free:
            self._grow()
        m = self._map
        slot = self._free.pop()
        self._index[key] = slot
        self._seq = seq = self._seq + 1
        at = HEADER + slot * SLOT
        head = _HEADS.get(size) or _HEADS.setdefault(size, struct.Struct(f"<BI{size}s"))
        head.pack_into(m, at + 1, size, seq, data)  # key length, start number, key
        m[at] = 1  # written last: the slot counts only once complete

    def remove(self, key: str) -> None:
        """Forget ``key`` (settled, or moved into the durable record)."""
        slot = self._index.pop(key, None)
        if slot is None:
            return
        at = HEADER + slot * SLOT
        self._map[at] = 0
        self._free.append(slot)

    def entries(self) -> dict[str, int]:
        """The keys started and not settled, with their start counts."""
        m = self._map
        return {k: m[HEADER + s * SLOT] for k, s in self._index.items()}

    def marker(self, key: str) -> str:
        """The marker of ``key``'s journaled start: ``<incarnation>:<start number>``."""
        at = HEADER + self._index[key] * SLOT
        return f"{self.incarnation}:{int.from_bytes(self._map[at + 2 : at + KEY_AT], 'little')}"

    def __contains__(self, key: str) -> bool:
        return key in self._index

    def __len__(self) -> int:
        return len(self._index)

    def _grow(self) -> None:
        old = self._slots
        self._slots = old * 2
        os.ftruncate(self._fd, HEADER + self._slots * SLOT)
        self._map.close()
        self._map = mmap.mmap(self._fd, HEADER + self._slots * SLOT)
        self._free.extend(range(self._slots - 1, old - 1, -1))

    def close(self, *, keep: bool | None = None) -> None:
        """Unlock and close; the file is deleted when empty (or ``keep`` is False)."""
        if self._closed:
            return
        self._closed = True
        if keep is None:
            keep = bool(self._index)
        if not keep:
            with contextlib.suppress(OSError):
                os.unlink(self.path)
        self._map.close()
        os.close(self._fd)  # releases the flock


def read_journal(path: Path) -> list[Start]:
    """The starts in a journal file: (entry key, count, marker) per slot."""
    return _parse(path.read_bytes())


def _incarnation(data: bytes) -> str | None:
    if len(data) < HEADER or data[:8] != MAGIC:
        return None
    return uuid.UUID(bytes=data[8:24]).hex


def _parse(data: bytes) -> list[Start]:
    incarnation = _incarnation(data)
    if incarnation is None:
        return []
    out: list[Start] = []
    for at in range(HEADER, len(data) - SLOT + 1, SLOT):
        count, length, seq = struct.unpack_from("<BBI", data, at)
        if count and 0 < length <= MAX_KEY:
            key = data[at + KEY_AT : at + KEY_AT + length].decode(errors="replace")
            out.append((key, count, f"{incarnation}:{seq}"))
    return out


@contextlib.asynccontextmanager
async def fold_lock(directory: Path) -> AsyncIterator[None]:
    """Hold the journal directory's fold lock (a flock; kill -9 releases it).

    One folder at a time on a host, and a session that folds (or reads the
    record) under it after another one sees that one's starts in the record.
    Not reentrant: fold with ``lock=False`` inside it.
    """
    try:
        fd = os.open(directory / FOLD_LOCK, os.O_RDWR | os.O_CREAT, 0o600)
    except FileNotFoundError:
        yield  # no directory: nothing to fold
        return
    try:
        deadline = time.monotonic() + FOLD_WAIT
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() > deadline:
                    logger.warning("another folder holds %s for long; folding anyway", directory)
                    break
                await asyncio.sleep(0.005)
        yield
    finally:
        os.close(fd)  # releases the lock


async def fold_dead_journals(
    directory: Path,
    record: RecordAdd,
    *,
    own: Path | None,
    ended: RecordEnded | None = None,
    lock: bool = True,
) -> int:
    """Fold every unlocked journal in ``directory`` (its consumer died) into the record.

    Folding takes the directory's :func:`fold_lock` (unless ``lock`` is False:
    the caller holds it), so that a session that folds (or reads the record)
    after another one sees that one's starts recorded. A journal is read under
    its lock, added to the record (each start under its marker, so a folder
    that dies half-way, or a failure already added before its consumer died, is
    not counted twice), reported to ``ended`` (by incarnation) and deleted.
    Returns how many starts were folded.
    """
    try:
        names = sorted(directory / n for n in os.listdir(directory) if n.endswith(SUFFIX))
    except FileNotFoundError:
        return 0
    folded = 0
    async with fold_lock(directory) if lock else contextlib.nullcontext():
        for path in names:
            if own is not None and path == own:
                continue
            folded += await _fold_one(path, record, ended)
    return folded


async def _fold_one(path: Path, record: RecordAdd, ended: RecordEnded | None) -> int:
    try:
        fd = os.open(path, os.O_RDWR)
    except FileNotFoundError:
        return 0  # folded by someone else meanwhile
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return 0  # its consumer is alive
        if os.fstat(fd).st_nlink == 0:
            return 0  # deleted by another folder after we opened it
        data = os.pread(fd, os.fstat(fd).st_size, 0)
        starts = _parse(data)
        count = 0
        if starts:
            await record(starts, ())
            count = sum(n for _, n, _ in starts)
            logger.info("folded %d handler starts of dead consumer %s", count, path.name)
        incarnation = _incarnation(data)
        if ended is not None and incarnation is not None:
            await ended(incarnation)
        with contextlib.suppress(FileNotFoundError):
            os.unlink(path)
        return count
    finally:
        os.close(fd)


def account(deliveries: Sequence[Delivery], ends: Sequence[float]) -> None:
    """Set each delivery's ``accounted`` from ``ends``, the sorted times consumer sessions
    of the group ended holding deliveries (dead journals folded, sessions closed).

    A session's end raises a message's broker count at most once (the broker
    gives back, or lets others claim, what it held), and only if the message
    was published before it; so ``min(deliveries - 1, ends since publish)`` of
    the earlier deliveries are explained without a lost start.

    >>> from troupe.brokers.message import Message
    >>> d = Delivery("s", "g", "1", Message(b"", None, {}, "1", 100.0), deliveries=5)
    >>> account([d], [20.0, 150.0, 160.0]); d.accounted
    2
    """
    for delivery in deliveries:
        message = delivery.message
        published = message.timestamp if message is not None else 0.0
        since = len(ends) - bisect.bisect_left(ends, published - ENDS_SKEW)
        delivery.accounted = min(delivery.deliveries - 1, since)


class JournaledAttempts(AttemptLog):
    """An :class:`AttemptLog` on a :class:`Journal`, folded into a broker's durable record.

    ``record(counts, once)`` adds start counts to the broker's record (at most
    once per ``once``); ``directory`` is the journal directory of the
    consumer's (broker, stream, group); ``ended`` hears of every dead journal
    folded (:func:`fold_dead_journals`).
    """

    def __init__(
        self,
        directory: Path,
        consumer: str,
        record: RecordAdd,
        window: int,
        *,
        ended: RecordEnded | None = None,
    ) -> None:
        self.directory = directory
        self._record = record
        self._ended = ended
        self.journal = Journal.create(directory, consumer, max(8, window))
        self._done: list[str] = []  # markers of failures whose slot is cleared

    def started(self, delivery: Delivery) -> None:
        self.journal.add(delivery.entry_id)

    async def failed(self, delivery: Delivery) -> None:
        key = delivery.entry_id
        if key not in self.journal:  # too long to journal: counted without a marker
            await self._record([(key, 1, "")], ())
            return
        marker = self.journal.marker(key)
        done, self._done = self._done, []
        await self._record([(key, 1, marker)], done)
        self.journal.remove(key)
        self._done.append(marker)

    def settled(self, deliveries: Sequence[Delivery]) -> None:
        remove = self.journal.remove
        for delivery in deliveries:
            remove(delivery.entry_id)

    def settled_one(self, delivery: Delivery) -> None:
        self.journal.remove(delivery.entry_id)

    def folding(self) -> contextlib.AbstractAsyncContextManager[None]:
        """The journal directory's :func:`fold_lock` (then fold with ``lock=False``)."""
        return fold_lock(self.directory)

    async def fold_dead(self, *, lock: bool = True) -> int:
        return await fold_dead_journals(
            self.directory, self._record, own=self.journal.path, ended=self._ended, lock=lock
        )

    def close(self) -> None:
        self.journal.close()


__all__ = [
    "Journal",
    "JournaledAttempts",
    "account",
    "fold_dead_journals",
    "fold_lock",
    "journal_directory",
    "read_journal",
]
