"""Ask deadlines share one timer yet expire each ask exactly at its own deadline."""

from __future__ import annotations

import asyncio

from hypothesis import given
from hypothesis import strategies as st

from troupe import AskTimeout, VirtualClock
from troupe.deadlines import AskDeadlines

asks = st.lists(
    st.tuples(
        st.integers(0, 20),  # issued at (virtual seconds)
        st.integers(1, 10),  # timeout
        st.one_of(st.none(), st.integers(0, 15)),  # replied after (None: never)
    ),
    max_size=25,
)


@given(asks=asks)
async def test_each_ask_times_out_iff_no_reply_before_its_deadline(
    asks: list[tuple[int, int, int | None]],
) -> None:
    clock = VirtualClock()
    deadlines = AskDeadlines(clock)
    loop = asyncio.get_running_loop()
    futures: list[asyncio.Future[str]] = []
    events: list[tuple[float, int, str, int]] = []  # (time, order, kind, index)
    for index, (issued, _, reply_after) in enumerate(asks):
        events.append((issued, 0, "issue", index))
        if reply_after is not None:
            events.append((issued + reply_after + 0.5, 1, "reply", index))
    futures = [loop.create_future() for _ in asks]
    for when, _, kind, index in sorted(events):
        await clock.advance(when - clock.now())
        if kind == "issue":
            deadlines.add(futures[index], f"a{index}", asks[index][1])
        elif not futures[index].done():
            futures[index].set_result("reply")
    await clock.advance(100)
    for (_, timeout, reply_after), future in zip(asks, futures, strict=True):
        timed_out = reply_after is None or reply_after + 0.5 > timeout
        if timed_out:
            assert isinstance(future.exception(), AskTimeout)
        else:
            assert future.result() == "reply"
    assert clock.pending() <= 1
