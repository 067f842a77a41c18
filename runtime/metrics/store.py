"""Slots of 64-bit counters that metrics live in: in memory, or in a shared file.

A *slot* is a named row of ``VALUES`` unsigned 64-bit integers, named by a
*key* (a tuple of strings such as ``("actor", "orders")``). The runtime keeps
a slot per metric group and bumps its integers directly; nothing is formatted
until something scrapes.

In a process tree every child keeps its slots in a file of its own in the
tree's metrics directory (``TROUPE_METRICS_DIR``), mapped into memory, so a
value is in the file the moment it is written: a child killed with SIGKILL
loses nothing already counted. The child holds an exclusive ``flock`` on its
file while it lives; the root reads every file, sums counters of live and
ended processes alike (a restarted child starts a new file, so nothing is lost
or counted twice) and takes gauges only from live ones. An ended process's
file is read one last time, folded into per-key totals and removed.

File layout: ``SLOTS`` slots of ``SLOT_SIZE`` bytes. A slot is a u64 state
(0 empty, 1 ready), a u64 key length, ``KEY_BYTES`` bytes of UTF-8 JSON key,
then the values. Slots are taken in order; a writer publishes a slot by
setting its state last.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import logging
import mmap
import os
import struct
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

logger = logging.getLogger(__name__)

VALUES = 32
KEY_BYTES = 240
HEADER = 16 + KEY_BYTES
SLOT_SIZE = HEADER + 8 * VALUES
SLOTS = 2048
FILE_SIZE = SLOT_SIZE * SLOTS
SUFFIX = ".troupe-metrics"
ENV_DIR = "TROUPE_METRICS_DIR"

_HEAD = struct.Struct("<QQ")
_READY = 1

Key = tuple[str, ...]


class Slot:
    """One named row of counters; ``values[i] += n`` is the whole write path."""

    __slots__ = ("key", "values")

    def __init__(self, key: Key, values: memoryview) -> None:
        self.key = key
        self.values = values


def encode_key(key: Key) -> bytes:
    """The key as stored; raises ValueError when it does not fit in a slot."""
    raw = json.dumps(list(key), ensure_ascii=False, separators=(",", ":")).encode()
    if len(raw) > KEY_BYTES:
        raise ValueError(f"metric key too long ({len(raw)} > {KEY_BYTES} bytes): {key!r}")
    return raw


class SlotStore:
    """Where one ActorSystem's metric slots live.

    ``SlotStore()`` keeps them in process memory; :meth:`create_file` maps
    them from a file in a process tree's metrics directory.
    """

    def __init__(self) -> None:
        self._slots: dict[Key, Slot] = {}
        self._map: mmap.mmap | None = None
        self._fd: int | None = None
        self.path: Path | None = None

    @classmethod
    def create_file(cls, directory: str | os.PathLike[str], stem: str) -> SlotStore:
        """A store backed by a new file in ``directory``, locked while this process lives."""
        store = cls()
        safe = "".join(c if c.isalnum() or c in "-_." else "_" for c in stem)[:80]
        name = f"{safe}.{os.getpid()}.{time.time_ns()}{SUFFIX}"
        path = Path(directory) / name
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o600)
        try:
            # The lock lives on a description of its own: mmap keeps a dup of ``fd``,
            # which must not keep the lock once close() says this store has ended.
            lock = os.open(path, os.O_RDONLY)
            try:
                fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
                os.ftruncate(fd, FILE_SIZE)  # sparse: untouched slots take no disk
                store._map = mmap.mmap(fd, FILE_SIZE, access=mmap.ACCESS_WRITE)
            except BaseException:
                os.close(lock)
                raise
        finally:
            os.close(fd)
        store._fd = lock
        store.path = path
        return store

    @property
    def full(self) -> bool:
        """True when a file-backed store has no free slot left."""
        return self._map is not None and len(self._slots) >= SLOTS

    def slot(self, key: Key) -> Slot | None:
        """The slot named ``key``, made on first use; None when the file is full or the
        key does not fit in a slot."""
        found = self._slots.get(key)
        if found is not None:
            return found
        try:
            raw = encode_key(key)
        except ValueError as exc:
            logger.warning("%s; not exported", exc)
            return None
        if self._map is None:
            values = memoryview(bytearray(8 * VALUES)).cast("Q")
        else:
            index = len(self._slots)
            if index >= SLOTS:
                return None
            base = index * SLOT_SIZE
            view = memoryview(self._map)
            view[base + 16 : base + 16 + len(raw)] = raw
            values = view[base + HEADER : base + SLOT_SIZE].cast("Q")
            _HEAD.pack_into(self._map, base, _READY, len(raw))
        made = Slot(key, values)
        self._slots[key] = made
        return made

    def slots(self) -> list[Slot]:
        """Every slot made so far."""
        return list(self._slots.values())

    def close(self) -> None:
        """Unlock the file, so readers see this process as ended; a no-op in memory.

        The mapping stays alive while counters still reference it, so a late
        write cannot fail; the root may already have read the file for good.
        """
        self._map = None
        if self._fd is not None:
            os.close(self._fd)  # releases the flock
            self._fd = None


@dataclass(frozen=True, slots=True)
class SlotSnapshot:
    """The values of one slot at scrape time; ``live`` is False for ended processes.

    ``starts`` is how many process lives a snapshot stands for (more than one
    once ended processes are folded together).
    """

    key: Key
    values: list[int]
    live: bool
    starts: int = 1


class _OpenFile:
    __slots__ = ("fd", "map")

    def __init__(self, fd: int, mapped: mmap.mmap) -> None:
        self.fd = fd
        self.map = mapped

    def close(self) -> None:
        self.map.close()
        os.close(self.fd)


class TreeReader:
    """Reads every store file in a process tree's metrics directory (root side).

    Files of live processes are read as they are. Once a process has ended
    (its lock is gone), its final values are folded into per-key totals and
    its file is closed (and deleted with ``remove_ended``), so a long-lived
    tree with many restarts holds one row per key, not one file per restart.
    """

    def __init__(self, directory: str | os.PathLike[str], *, remove_ended: bool = False) -> None:
        self.directory = Path(directory)
        self.remove_ended = remove_ended
        self._files: dict[Path, _OpenFile] = {}
        self._retired: dict[Key, SlotSnapshot] = {}
        self._retired_names: set[str] = set()

    def snapshots(self) -> Iterator[SlotSnapshot]:
        """The slots of every live store file, then the folded totals of ended ones."""
        try:
            paths = sorted(self.directory.glob(f"*{SUFFIX}"))
        except OSError:
            paths = []
        for path in paths:
            if path.name in self._retired_names:
                continue
            opened = self._open(path)
            if opened is None:
                continue
            if _writer_alive(opened.fd):
                yield from _read_slots(opened.map, True)
            else:
                self._retire(path, opened)
        yield from list(self._retired.values())

    def _open(self, path: Path) -> _OpenFile | None:
        opened = self._files.get(path)
        if opened is not None:
            return opened
        try:
            fd = os.open(path, os.O_RDONLY)
        except OSError:
            return None
        try:
            if os.fstat(fd).st_size < FILE_SIZE:
                os.close(fd)  # still being created (the lock comes before the size)
                return None
            mapped = mmap.mmap(fd, FILE_SIZE, access=mmap.ACCESS_READ)
        except OSError:
            os.close(fd)
            return None
        opened = self._files[path] = _OpenFile(fd, mapped)
        return opened

    def _retire(self, path: Path, opened: _OpenFile) -> None:
        retired = self._retired
        for snap in _read_slots(opened.map, False):
            before = retired.get(snap.key)
            if before is None:
                retired[snap.key] = snap
            else:
                values = [a + b for a, b in zip(before.values, snap.values, strict=True)]
                retired[snap.key] = SlotSnapshot(
                    snap.key, values, False, before.starts + snap.starts
                )
        opened.close()
        del self._files[path]
        self._retired_names.add(path.name)
        if self.remove_ended:
            with contextlib.suppress(OSError):
                path.unlink()

    def close(self) -> None:
        """Unmap every file."""
        for opened in self._files.values():
            opened.close()
        self._files.clear()


def _writer_alive(fd: int) -> bool:
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except BlockingIOError:
        return True  # the writer still holds its lock
    fcntl.flock(fd, fcntl.LOCK_UN)
    return False


def _read_slots(mapped: mmap.mmap, live: bool) -> Iterator[SlotSnapshot]:
    for index in range(SLOTS):
        base = index * SLOT_SIZE
        state, length = _HEAD.unpack_from(mapped, base)
        if state != _READY:
            return
        if not 0 < length <= KEY_BYTES:
            logger.warning("corrupt metrics slot %d (key length %d); skipping file", index, length)
            return
        try:
            key = tuple(json.loads(mapped[base + 16 : base + 16 + length]))
        except ValueError:
            logger.warning("corrupt metrics slot %d key; skipping file", index)
            return
        values = list(struct.unpack_from(f"<{VALUES}Q", mapped, base + HEADER))
        yield SlotSnapshot(key, values, live)


def remove_tree_directory(directory: str | os.PathLike[str]) -> None:
    """Delete a tree's metrics directory and the store files in it."""
    path = Path(directory)
    for item in path.glob(f"*{SUFFIX}"):
        with contextlib.suppress(OSError):
            item.unlink()
    with contextlib.suppress(OSError):
        path.rmdir()
