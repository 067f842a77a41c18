"""The tree store: counters of ended processes are kept, gauges only from live ones."""

from __future__ import annotations

import tempfile
from pathlib import Path

from hypothesis import given
from hypothesis import strategies as st

from troupe.metrics import BUCKET0, DEPTH, FAILED
from troupe.metrics.export import aggregate
from troupe.metrics.store import SlotStore, TreeReader, remove_tree_directory

# One process life: (process name, [(actor label, handled, failed)], queued gauge, killed?)
lives = st.lists(
    st.tuples(
        st.sampled_from(["p-0", "p-1"]),
        st.lists(
            st.tuples(st.sampled_from(["a", "b"]), st.integers(0, 1000), st.integers(0, 50)),
            max_size=4,
        ),
        st.integers(0, 30),
        st.booleans(),
    ),
    max_size=6,
)


@given(lives=lives)
def test_tree_totals_survive_process_deaths(
    lives: list[tuple[str, list[tuple[str, int, int]], int, bool]],
) -> None:
    directory = Path(tempfile.mkdtemp(prefix="troupe-metrics-test-"))
    stores: list[SlotStore] = []
    reader = TreeReader(directory, remove_ended=True)
    try:
        handled: dict[str, int] = {}
        failed: dict[str, int] = {}
        depth: dict[str, int] = {}
        starts: dict[str, int] = {}
        up: dict[str, int] = {}
        for process, counts, queued, ended in lives:
            store = SlotStore.create_file(directory, process)
            stores.append(store)
            meta = store.slot(("process", process))
            assert meta is not None
            starts[process] = starts.get(process, 0) + 1
            for label, n, f in counts:
                slot = store.slot(("actor", label))
                assert slot is not None
                slot.values[BUCKET0] += n
                slot.values[FAILED] += f
                slot.values[DEPTH] = queued
                handled[label] = handled.get(label, 0) + n
                failed[label] = failed.get(label, 0) + f
            if not ended:
                for label in {label for label, _, _ in counts}:  # a gauge: set, not added
                    depth[label] = depth.get(label, 0) + queued
            if ended:
                store.close()  # the lock goes, as when the process dies
            else:
                up[process] = up.get(process, 0) + 1
        first = aggregate(reader.snapshots())
        totals = aggregate(reader.snapshots())  # ended files are folded once, not again
        assert {k: t.values for k, t in totals.items()} == {k: t.values for k, t in first.items()}
        for label, n in handled.items():
            values = totals[("actor", label)].values
            assert values[BUCKET0] == n
            assert values[FAILED] == failed[label]
            assert values[DEPTH] == depth.get(label, 0)  # gauges of ended processes dropped
        for process, count in starts.items():
            assert totals[("process", process)].starts == count
            assert totals[("process", process)].up == up.get(process, 0)
        files = len(list(directory.iterdir()))
        assert files == sum(not ended for *_, ended in lives)  # ended files were removed
    finally:
        for store in stores:
            store.close()
        reader.close()
        remove_tree_directory(directory)
    assert not directory.exists()


def test_memory_store_and_full_file_store() -> None:
    memory = SlotStore()
    slot = memory.slot(("actor", "x"))
    assert slot is not None and memory.slot(("actor", "x")) is slot
    assert memory.path is None and not memory.full
    directory = Path(tempfile.mkdtemp(prefix="troupe-metrics-test-"))
    try:
        store = SlotStore.create_file(directory, "full")
        made = 0
        while store.slot(("actor", str(made))) is not None:
            made += 1
        assert store.full and made > 1000
        store.close()
    finally:
        remove_tree_directory(directory)
