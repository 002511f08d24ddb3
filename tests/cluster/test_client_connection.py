"""The client's multiplexed connection: batched writes, direct wake-ups, deadlines, breakage."""

from __future__ import annotations

import pytest
import trio

from cluster.client import ConnectionLost, _Connection
from ranges.api import Get


class FakeConn:
    """A ClientConnection stand-in: records written batches, answers what the test says."""

    def __init__(self) -> None:
        self.batches: list[list[dict]] = []
        self._send, self._receive = trio.open_memory_channel(100)
        self.closed = False

    async def send_many(self, frames) -> None:
        self.batches.append(list(frames))
        await trio.sleep(0)

    async def receive(self) -> object:
        try:
            item = await self._receive.receive()
        except trio.EndOfChannel:
            raise ConnectionError("closed") from None
        if isinstance(item, Exception):
            raise item
        return item

    def answer(self, frame: object) -> None:
        self._send.send_nowait(frame)

    async def aclose(self) -> None:
        self.closed = True
        await self._send.aclose()


async def test_concurrent_calls_share_one_write_and_get_their_own_answers(nursery):
    conn = FakeConn()
    connection = _Connection("n1", conn)
    nursery.start_soon(connection.reader)
    results = {}

    async def call(i: int) -> None:
        results[i] = await connection.call(Get(b"k%d" % i))

    async with trio.open_nursery() as calls:
        for i in range(10):
            calls.start_soon(call, i)
        await trio.testing.wait_all_tasks_blocked()
        assert len(conn.batches) == 1 and len(conn.batches[0]) == 10  # one send for all ten
        for frame in reversed(conn.batches[0]):  # answers in any order: echo the key read
            conn.answer({"id": frame["id"], "ok": {"value": frame["req"][1]}})
    assert results == {i: {"value": b"k%d" % i} for i in range(10)}
    assert connection.waiters == {}


async def test_a_deadline_fails_the_call_and_a_late_answer_is_ignored(nursery, autojump_clock):
    conn = FakeConn()
    connection = _Connection("n1", conn)
    nursery.start_soon(connection.reader)
    start = trio.current_time()
    with pytest.raises(trio.TooSlowError):
        await connection.call(Get(b"k"), deadline=start + 1.0)
    assert 1.0 <= trio.current_time() - start <= 1.0 + 2 * connection.DEADLINE_SWEEP_S
    assert connection.waiters == {}
    conn.answer({"id": 1, "ok": {"value": b"late"}})  # ignored, connection still usable
    await trio.testing.wait_all_tasks_blocked()
    assert connection.broken is None


async def test_a_broken_connection_fails_every_waiting_call(nursery):
    conn = FakeConn()
    connection = _Connection("n1", conn)
    nursery.start_soon(connection.reader)
    failures = []

    async def call() -> None:
        try:
            await connection.call(Get(b"k"))
        except ConnectionLost as e:
            failures.append(e)

    async with trio.open_nursery() as calls:
        for _ in range(3):
            calls.start_soon(call)
        await trio.testing.wait_all_tasks_blocked()
        conn.answer(ConnectionError("reset by peer"))
    assert len(failures) == 3
    with pytest.raises(ConnectionLost):
        await connection.call(Get(b"k"))


async def test_cancelling_a_call_forgets_its_waiter(nursery):
    conn = FakeConn()
    connection = _Connection("n1", conn)
    nursery.start_soon(connection.reader)
    with trio.move_on_after(0.05):
        await connection.call(Get(b"k"))
    assert connection.waiters == {}
