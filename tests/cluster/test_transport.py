"""Tests for cluster/transport.py: framing, handshake, listener robustness, peer senders."""

from __future__ import annotations

import logging
import random
import socket

import pytest
import trio
import trio.testing

from cluster.transport import (
    FRAME_HEADER,
    HELLO_BYTES_MAX,
    Backoff,
    ClientConnection,
    ConnectionClosed,
    FrameDecoder,
    FrameReader,
    FrameTooLarge,
    HandshakeError,
    Listener,
    MalformedFrame,
    NodeUnreachable,
    PeerTransport,
    check_dialer_hello,
    dial_client,
    encode_frame,
    make_hello,
    parse_address,
)

CLUSTER = "c-main"
LOCALHOST = "127.0.0.1"
STEP_TIMEOUT_S = 3.0


# ---------------------------------------------------------------------------------------------
# Helpers


class CollectingPeerHandler:
    """Enqueues (from_node, frame) on a bounded channel, as a node driver would."""

    def __init__(self) -> None:
        self.send_channel, self.receive_channel = trio.open_memory_channel[tuple[int, object]](1000)

    def peer_frame(self, from_node: int, frame: object) -> None:
        self.send_channel.send_nowait((from_node, frame))

    async def next(self) -> tuple[int, object]:
        with trio.fail_after(STEP_TIMEOUT_S):
            return await self.receive_channel.receive()

    def pending(self) -> list[tuple[int, object]]:
        out = []
        while True:
            try:
                out.append(self.receive_channel.receive_nowait())
            except trio.WouldBlock:
                return out


class EchoClientHandler:
    async def client_connection(self, conn: ClientConnection) -> None:
        while True:
            frame = await conn.receive()
            await conn.send(frame)


def make_listener(node_id: int = 2, **kwargs) -> tuple[Listener, CollectingPeerHandler]:
    handler = CollectingPeerHandler()
    kwargs.setdefault("is_known_peer", lambda n: n in (1, 2, 3))
    listener = Listener(
        node_id=node_id,
        cluster_id=kwargs.pop("cluster_id", CLUSTER),
        peer_handler=handler,
        client_handler=EchoClientHandler(),
        **kwargs,
    )
    return listener, handler


def make_transport(addresses: dict[int, str], **kwargs) -> PeerTransport:
    kwargs.setdefault("rng", random.Random(7))
    return PeerTransport(kwargs.pop("self_node_id", 1), kwargs.pop("cluster_id", CLUSTER), addresses, **kwargs)


async def wait_until(predicate, timeout_s: float = STEP_TIMEOUT_S) -> None:
    with trio.fail_after(timeout_s):
        while not predicate():
            await trio.sleep(0.005)


async def echo(conn: ClientConnection, obj: object) -> object:
    await conn.send(obj)
    with trio.fail_after(STEP_TIMEOUT_S):
        return await conn.receive()


async def expect_closed_by_remote(stream: trio.SocketStream) -> None:
    """The listener closed this raw connection (FIN or RST) promptly."""
    with trio.fail_after(STEP_TIMEOUT_S):
        while True:
            try:
                data = await stream.receive_some(65536)
            except trio.BrokenResourceError:
                return
            if not data:
                return


async def raw_peer_handshake(port: int, node_id: int = 1) -> trio.SocketStream:
    stream = await trio.open_tcp_stream(LOCALHOST, port)
    await stream.send_all(encode_frame(make_hello("peer", CLUSTER, node_id)))
    reader = FrameReader(stream)
    with trio.fail_after(STEP_TIMEOUT_S):
        reply = await reader.receive()
    assert reply == make_hello("peer", CLUSTER, 2)
    return stream


@pytest.fixture
def refused_address():
    """An address where connecting is refused: a port bound but not listening. Holding the
    socket for the whole test keeps another process (or test) from taking the port."""
    with socket.socket() as sock:
        sock.bind((LOCALHOST, 0))
        yield f"{LOCALHOST}:{sock.getsockname()[1]}"


# ---------------------------------------------------------------------------------------------
# Framing


FRAMES = [None, 0, -1, 2**40, "héllo", b"\x00\xff" * 50, [1, [2, [3]]], {"g": 7, "msgs": [[1, b"x"]]}, {}]


def test_frames_round_trip_when_fed_one_byte_at_a_time():
    wire = b"".join(encode_frame(f) for f in FRAMES)
    decoder = FrameDecoder()
    decoded = []
    for i in range(len(wire)):
        decoder.feed(wire[i : i + 1])
        decoded.extend(decoder.frames())
    assert decoded == FRAMES
    assert decoder.buffered_bytes == 0


def test_frames_round_trip_when_fed_all_at_once():
    decoder = FrameDecoder()
    decoder.feed(b"".join(encode_frame(f) for f in FRAMES))
    assert decoder.frames() == FRAMES


def test_encoded_frame_is_length_prefix_then_cbor():
    frame = encode_frame({"a": 1})
    (length,) = FRAME_HEADER.unpack_from(frame)
    assert length == len(frame) - 4


def test_decoder_rejects_oversized_length_from_the_header_alone():
    decoder = FrameDecoder(max_frame_bytes=100)
    decoder.feed(FRAME_HEADER.pack(101))  # no body at all
    with pytest.raises(FrameTooLarge, match="announces 101 bytes, over the 100-byte limit"):
        decoder.frames()
    with pytest.raises(FrameTooLarge):  # poisoned: the stream has lost its frame boundaries
        decoder.feed(encode_frame(1))


def test_decoder_rejects_undecodable_cbor():
    decoder = FrameDecoder()
    decoder.feed(FRAME_HEADER.pack(3) + b"\xff\xff\xff")
    with pytest.raises(MalformedFrame, match="undecodable cbor"):
        decoder.frames()


def test_encode_refuses_a_frame_over_the_limit():
    with pytest.raises(FrameTooLarge, match="exceeds the 10-byte limit"):
        encode_frame(b"x" * 20, max_frame_bytes=10)


async def test_frame_reader_iterates_until_clean_close():
    left, right = trio.testing.memory_stream_pair()
    await left.send_all(b"".join(encode_frame(f) for f in FRAMES))
    await left.aclose()
    assert [f async for f in FrameReader(right)] == FRAMES


async def test_frame_reader_reports_close_in_the_middle_of_a_frame():
    left, right = trio.testing.memory_stream_pair()
    await left.send_all(encode_frame("complete") + encode_frame("truncated")[:-2])
    await left.aclose()
    reader = FrameReader(right)
    assert await reader.receive() == "complete"
    with pytest.raises(ConnectionClosed, match="middle of a frame"):
        await reader.receive()


# ---------------------------------------------------------------------------------------------
# Addresses and backoff


def test_parse_address():
    assert parse_address("127.0.0.1:26257") == ("127.0.0.1", 26257)
    assert parse_address("node-a.example:1") == ("node-a.example", 1)
    assert parse_address("[::1]:26257") == ("::1", 26257)
    assert parse_address("localhost:0", allow_port_zero=True) == ("localhost", 0)


@pytest.mark.parametrize(
    "address, message",
    [
        ("127.0.0.1", "has no port"),
        (":26257", "empty host"),
        ("host:http", "is not a number"),
        ("host:70000", "out of range"),
        ("host:0", "out of range"),
        ("::1:26257", "IPv6 host in brackets"),
        ("[::1]26257", "has no port"),
        ("[::1:26257", "without a closing"),
    ],
)
def test_parse_address_errors_say_what_is_wrong(address, message):
    with pytest.raises(ValueError, match=message):
        parse_address(address)


def test_backoff_doubles_from_50ms_to_2s_with_seeded_jitter():
    backoff = Backoff(random.Random(1))
    delays = [backoff.next_delay_s() for _ in range(10)]
    nominal = [0.05, 0.1, 0.2, 0.4, 0.8, 1.6, 2.0, 2.0, 2.0, 2.0]
    for delay, top in zip(delays, nominal):
        assert top / 2 <= delay <= top
    again = Backoff(random.Random(1))
    assert [again.next_delay_s() for _ in range(10)] == delays
    backoff.reset()
    assert backoff.next_delay_s() <= 0.05


# ---------------------------------------------------------------------------------------------
# Handshake


def test_dialer_hello_checks():
    def verdict(hello, **kw):
        kw.setdefault("cluster_id", CLUSTER)
        kw.setdefault("node_id", 2)
        kw.setdefault("is_known_peer", lambda n: n in (1, 2, 3))
        return check_dialer_hello(hello, **kw)

    assert verdict(make_hello("peer", CLUSTER, 1)) is None
    assert verdict(make_hello("client", None, None)) is None
    assert "protocol 1, you speak 2" in verdict({**make_hello("peer", CLUSTER, 1), "spanlite": 2})
    assert "unknown role 'admin'" in verdict({**make_hello("peer", CLUSTER, 1), "role": "admin"})
    assert "must carry its node_id" in verdict(make_hello("peer", CLUSTER, None))
    assert "not a member this node knows" in verdict(make_hello("peer", CLUSTER, 9))
    assert "this node's own id" in verdict(make_hello("peer", CLUSTER, 2))
    assert "expected a hello map" in verdict([1, 2])
    assert verdict(make_hello("peer", "c-other", 1)) == (
        "this node belongs to cluster c-main, you belong to cluster c-other: "
        "is the store directory from another cluster?"
    )


async def test_handshake_rejects_a_client_of_another_cluster_with_a_clear_message(nursery, caplog):
    caplog.set_level(logging.WARNING, logger="spanlite.transport")
    listener, _ = make_listener()
    port = await nursery.start(listener.serve, LOCALHOST, 0)
    with pytest.raises(HandshakeError) as info:
        await dial_client(f"{LOCALHOST}:{port}", cluster_id="c-other")
    message = str(info.value)
    assert f"node at {LOCALHOST}:{port} refused the connection" in message
    assert "this node belongs to cluster c-main, you belong to cluster c-other" in message
    assert "is the store directory from another cluster?" in message
    assert "rejected connection from 127.0.0.1:" in caplog.text
    assert listener.stats.handshakes_rejected == 1
    async with await dial_client(f"{LOCALHOST}:{port}", cluster_id=CLUSTER) as conn:
        assert await echo(conn, "still serving") == "still serving"
        assert conn.remote_node_id == 2


async def test_peer_of_another_cluster_is_rejected_and_retried(nursery, caplog):
    caplog.set_level(logging.WARNING, logger="spanlite.transport")
    listener, handler = make_listener()
    port = await nursery.start(listener.serve, LOCALHOST, 0)
    transport = make_transport({2: f"{LOCALHOST}:{port}"}, cluster_id="c-other")
    await nursery.start(transport.run)
    transport.send(2, "lost")
    await wait_until(lambda: transport.stats[2].connect_failures >= 2)
    assert "this node belongs to cluster c-main, you belong to cluster c-other" in caplog.text
    assert handler.pending() == []
    transport.close()


async def test_dialer_rejects_a_node_that_is_not_the_one_it_meant_to_dial(nursery, caplog):
    caplog.set_level(logging.ERROR, logger="spanlite.transport")
    listener, _ = make_listener(node_id=3)
    port = await nursery.start(listener.serve, LOCALHOST, 0)
    transport = make_transport({2: f"{LOCALHOST}:{port}"})
    await nursery.start(transport.run)
    await wait_until(lambda: transport.stats[2].connect_failures >= 1)
    assert "expecting node 2, but node 3 answered: is the address list out of date?" in caplog.text
    assert transport.stats[2].connects == 0
    transport.close()


async def test_handshake_that_does_not_complete_in_time_closes_the_connection(nursery, caplog):
    caplog.set_level(logging.WARNING, logger="spanlite.transport")
    listener, _ = make_listener(handshake_timeout_s=0.2)
    port = await nursery.start(listener.serve, LOCALHOST, 0)
    silent = await trio.open_tcp_stream(LOCALHOST, port)
    await expect_closed_by_remote(silent)
    assert listener.stats.handshakes_timed_out == 1
    assert "no handshake within 0.2 s" in caplog.text


# ---------------------------------------------------------------------------------------------
# Listener robustness


async def test_oversized_frame_closes_only_that_connection(nursery, caplog):
    caplog.set_level(logging.ERROR, logger="spanlite.transport")
    listener, _ = make_listener(max_frame_bytes=1024)
    port = await nursery.start(listener.serve, LOCALHOST, 0)
    address = f"{LOCALHOST}:{port}"
    good = await dial_client(address)
    bad = await dial_client(address)
    assert await echo(good, "before") == "before"
    await bad.send({"blob": b"x" * 2000})
    with pytest.raises(ConnectionClosed), trio.fail_after(STEP_TIMEOUT_S):
        await bad.receive()
    assert await echo(good, "after") == "after"
    assert listener.stats.frame_errors == 1
    assert f"closing connection with {bad.local_address}" in caplog.text
    assert "over the 1024-byte limit" in caplog.text
    await good.aclose()
    await bad.aclose()


async def test_oversized_length_is_rejected_without_waiting_for_the_body(nursery, caplog):
    caplog.set_level(logging.ERROR, logger="spanlite.transport")
    listener, _ = make_listener()
    port = await nursery.start(listener.serve, LOCALHOST, 0)
    stream = await raw_peer_handshake(port)
    await stream.send_all(FRAME_HEADER.pack(100 * 1024 * 1024))  # announces 100 MiB, sends none
    await expect_closed_by_remote(stream)
    assert "closing connection from node 1 at 127.0.0.1:" in caplog.text
    assert "announces 104857600 bytes" in caplog.text


async def test_garbage_bytes_close_the_connection_and_the_listener_survives(nursery, caplog):
    caplog.set_level(logging.ERROR, logger="spanlite.transport")
    listener, handler = make_listener()
    port = await nursery.start(listener.serve, LOCALHOST, 0)
    # Garbage instead of a hello (an HTTP request, say).
    http = await trio.open_tcp_stream(LOCALHOST, port)
    await http.send_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
    await expect_closed_by_remote(http)
    assert f"over the {HELLO_BYTES_MAX}-byte limit" in caplog.text
    # Garbage after a good peer handshake.
    peer = await raw_peer_handshake(port)
    await peer.send_all(encode_frame("fine") + FRAME_HEADER.pack(4) + b"\xff\xff\xff\xff")
    assert await handler.next() == (1, "fine")
    await expect_closed_by_remote(peer)
    assert "undecodable cbor" in caplog.text
    assert listener.stats.frame_errors == 2
    async with await dial_client(f"{LOCALHOST}:{port}") as conn:
        assert await echo(conn, {"ok": True}) == {"ok": True}


async def test_concurrent_sends_on_one_client_connection_all_arrive(nursery):
    listener, _ = make_listener()
    port = await nursery.start(listener.serve, LOCALHOST, 0)
    async with await dial_client(f"{LOCALHOST}:{port}") as conn:
        async with trio.open_nursery() as senders:
            for i in range(50):
                senders.start_soon(conn.send, i)
        received = []
        with trio.fail_after(STEP_TIMEOUT_S):
            while len(received) < 50:
                received.append(await conn.receive())
        assert sorted(received) == list(range(50))


async def test_dial_client_names_the_address_when_refused(refused_address):
    address = refused_address
    with pytest.raises(NodeUnreachable) as info:
        await dial_client(address, timeout=2)
    assert str(info.value) == (
        f"cannot reach node at {address}: connection refused — is `spanlite start` running there?"
    )
    assert isinstance(info.value, ConnectionError)


# ---------------------------------------------------------------------------------------------
# Peer transport


async def test_queued_frames_leave_in_order_in_one_batch(nursery):
    listener, handler = make_listener()
    port = await nursery.start(listener.serve, LOCALHOST, 0)
    transport = make_transport({1: "127.0.0.1:1", 2: f"{LOCALHOST}:{port}"})  # own entry ignored
    for i in range(100):
        assert transport.send(2, {"seq": i})
    await nursery.start(transport.run)
    received = [await handler.next() for _ in range(100)]
    assert received == [(1, {"seq": i}) for i in range(100)]
    stats = transport.stats[2]
    assert (stats.frames_sent, stats.batches_sent, stats.frames_dropped) == (100, 1, 0)
    assert stats.bytes_sent == sum(len(encode_frame({"seq": i})) for i in range(100))
    assert listener.stats.peer_frames_received == 100
    assert listener.stats.peer_bytes_received >= stats.bytes_sent
    transport.close()


async def test_peer_reconnects_after_the_listener_restarts(nursery):
    transport = None
    async with trio.open_nursery() as first_life:
        listener, handler = make_listener()
        port = await first_life.start(listener.serve, LOCALHOST, 0)
        transport = make_transport({2: f"{LOCALHOST}:{port}"})
        await nursery.start(transport.run)
        transport.send(2, "a")
        assert await handler.next() == (1, "a")
        first_life.cancel_scope.cancel()
    await wait_until(lambda: not transport.is_connected(2))
    transport.send(2, "b")
    transport.send(2, "c")
    await wait_until(lambda: transport.stats[2].connect_failures >= 2)  # refused, backing off
    assert transport.queued_frames(2) == 2
    listener, handler = make_listener()
    await nursery.start(listener.serve, LOCALHOST, port)
    assert [await handler.next(), await handler.next()] == [(1, "b"), (1, "c")]
    assert transport.stats[2].connects == 2
    assert transport.stats[2].frames_sent == 3
    transport.close()


async def test_bounded_queue_drops_and_counts(nursery):
    transport = make_transport({2: "127.0.0.1:1"}, queue_frames_max=5)  # never dialed: run() starts later
    results = [transport.send(2, i) for i in range(8)]
    assert results == [True] * 5 + [False] * 3
    assert transport.stats[2].frames_dropped_queue_full == 3
    assert transport.queued_frames(2) == 5
    assert transport.send(9, "to nobody") is False
    assert transport.frames_dropped_unknown_peer == 1
    # The queued five are delivered once the peer is reachable.
    listener, handler = make_listener()
    port = await nursery.start(listener.serve, LOCALHOST, 0)
    transport.update_addresses({2: f"{LOCALHOST}:{port}"})
    await nursery.start(transport.run)
    assert [await handler.next() for _ in range(5)] == [(1, i) for i in range(5)]
    transport.close()


async def test_filters_drop_outbound_and_inbound_frames(nursery):
    listener, handler = make_listener()
    port = await nursery.start(listener.serve, LOCALHOST, 0)
    transport = make_transport({2: f"{LOCALHOST}:{port}"})
    await nursery.start(transport.run)
    await wait_until(lambda: transport.is_connected(2))

    transport.filter = lambda frm, to: not (frm == 1 and to == 2)
    assert transport.send(2, "cut at the sender") is False
    assert transport.stats[2].frames_dropped_filter == 1
    transport.filter = None

    listener.filter = lambda frm, to: not (frm == 1 and to == 2)
    assert transport.send(2, "cut at the receiver") is True
    await wait_until(lambda: listener.stats.peer_frames_dropped_filter == 1)
    listener.filter = None

    transport.send(2, "healed")
    assert await handler.next() == (1, "healed")
    assert handler.pending() == []
    assert transport.total_stats().frames_dropped == 1
    transport.close()


async def test_update_addresses_redials_a_moved_peer(nursery, refused_address):
    transport = make_transport({2: refused_address})
    await nursery.start(transport.run)
    transport.send(2, "queued while unreachable")
    await wait_until(lambda: transport.stats[2].connect_failures >= 1)
    listener, handler = make_listener()
    port = await nursery.start(listener.serve, LOCALHOST, 0)
    transport.update_addresses({2: f"{LOCALHOST}:{port}", 3: f"{LOCALHOST}:{port}"})
    assert await handler.next() == (1, "queued while unreachable")
    assert transport.addresses == {2: f"{LOCALHOST}:{port}", 3: f"{LOCALHOST}:{port}"}
    transport.close()


async def test_close_stops_run_and_drops_later_sends(refused_address):
    transport = make_transport({2: refused_address})
    with trio.fail_after(STEP_TIMEOUT_S):
        async with trio.open_nursery() as nursery:
            await nursery.start(transport.run)
            transport.close()
    assert transport.send(2, "late") is False
    assert transport.frames_dropped_closed == 1


async def test_a_newer_connection_from_the_same_peer_replaces_the_older_once_it_carries_a_frame(nursery):
    listener, handler = make_listener()
    port = await nursery.start(listener.serve, LOCALHOST, 0)
    first = await raw_peer_handshake(port)
    await first.send_all(encode_frame("one"))
    assert await handler.next() == (1, "one")
    # A dialer that handshakes as node 1 and hangs up without sending does not disturb `first`.
    await (await raw_peer_handshake(port)).aclose()
    await first.send_all(encode_frame("still one"))
    assert await handler.next() == (1, "still one")
    second = await raw_peer_handshake(port)
    await second.send_all(encode_frame("two"))
    assert await handler.next() == (1, "two")
    await expect_closed_by_remote(first)


class NodeStyleHandler:
    """One object for both roles, serving each client with a reader task in a nursery (so
    transport errors surface inside an ExceptionGroup), as cluster/node.py does."""

    def __init__(self) -> None:
        self.peer_frames: list[tuple[int, object]] = []

    def peer_frame(self, from_node: int, frame: object) -> None:
        self.peer_frames.append((from_node, frame))

    async def client_connection(self, conn: ClientConnection) -> None:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(self._echo, conn)

    async def _echo(self, conn: ClientConnection) -> None:
        while True:
            await conn.send(await conn.receive())


async def test_one_handler_object_for_both_roles_and_errors_inside_its_nursery(nursery, caplog):
    caplog.set_level(logging.ERROR, logger="spanlite.transport")
    handler = NodeStyleHandler()
    listener = Listener(node_id=2, cluster_id=CLUSTER, handler=handler, max_frame_bytes=1024)
    port = await nursery.start(listener.serve, LOCALHOST, 0)
    address = f"{LOCALHOST}:{port}"
    async with await dial_client(address) as conn:
        assert await echo(conn, "hi") == "hi"
    bad = await dial_client(address)
    await bad.send(b"x" * 4096)
    with pytest.raises(ConnectionClosed), trio.fail_after(STEP_TIMEOUT_S):
        await bad.receive()
    await bad.aclose()
    transport = make_transport({2: address})
    await nursery.start(transport.run)
    transport.send(2, "peer frame")
    await wait_until(lambda: handler.peer_frames == [(1, "peer frame")])
    async with await dial_client(address) as conn:
        assert await echo(conn, "still here") == "still here"
    assert listener.stats.frame_errors == 1
    transport.close()


async def test_dialing_a_node_that_has_not_joined_a_cluster_says_so(nursery, caplog):
    caplog.set_level(logging.ERROR, logger="spanlite.transport")
    listener, _ = make_listener(node_id=None, cluster_id=None, is_known_peer=None)
    port = await nursery.start(listener.serve, LOCALHOST, 0)
    transport = make_transport({2: f"{LOCALHOST}:{port}"})
    await nursery.start(transport.run)
    await wait_until(lambda: transport.stats[2].connect_failures >= 1)
    assert "has not joined a cluster yet" in caplog.text
    transport.close()
