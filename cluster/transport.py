"""The node's TCP transport: framing, handshake, inbound listener, outbound peer senders.

Wire format
-----------
Every message is a *frame*: a 4-byte big-endian payload length, then that many bytes of
one cbor item (`encode_frame`). The receiver checks the length against its limit
(`MAX_FRAME_BYTES_DEFAULT`, configurable) from the header alone, before reading the body,
and decodes whole frames with `cbor2.loads`. `FrameDecoder` is the sans-I/O half (bytes in,
frames out); `FrameReader` drives it from a trio stream.

Handshake
---------
The first frame in each direction is a hello:
`{"spanlite": 1, "role": "peer" | "client", "cluster_id": str | None, "node_id": int | None}`.
The dialing side speaks first. The accepting side (`Listener`) checks the version, the role,
the cluster id (when both sides have one) and, for peers, that the node id is a member it
knows and is not its own; it answers with its own hello, or with an error hello
`{"spanlite": 1, "error": "<what was wrong>"}` and closes. The dialing side checks the
answer (cluster id; the node id it meant to dial, when known) and raises `HandshakeError`.
A handshake that does not finish within `HANDSHAKE_TIMEOUT_S_DEFAULT` closes the connection.
A hello frame may be at most `HELLO_BYTES_MAX`, so an unauthenticated connection cannot make
the listener buffer a 64 MiB frame.

Connections between nodes
-------------------------
Each node dials each of its peers (`PeerTransport`, one outbound connection per peer that
carries the messages of every Paxos group) and accepts their dials (`Listener`). Between two
nodes there are therefore two TCP connections, one per direction; each carries frames in one
direction only (after the handshake). That keeps both sides simple: a sender never reads
frames, a receiver never writes them, and there is no dial race to break. The listener keeps
at most one inbound connection per peer node id: once a newer one from the same node carries
a frame, the older one is closed (it was abandoned by the sender, or is half-open after a crash).

Guarantees
----------
- `PeerTransport.send` never blocks and never raises on network trouble: the frame goes on a
  bounded per-peer queue or is dropped and counted. Paxos tolerates message loss, delay and
  duplication; it does not tolerate a node that stalls because one peer is slow.
- Frames to one peer leave in the order they were queued; all frames queued at the moment the
  sender wakes up are written with one `send_all` (batching, bounded by `batch_bytes_max`).
- A malformed or oversized frame, a bad hello, a slow handshake, a reset: each closes only the
  connection concerned, logged on the "spanlite.transport" logger with the remote address and
  what was wrong. No error caused by a remote end escapes `Listener.serve`.
- A disconnected sender redials with exponential backoff and jitter (`Backoff`), forever,
  until `PeerTransport.close()`; frames queued meanwhile are delivered after it reconnects.

HAZARD: frames in a batch that was being written when a connection broke may or may not have
arrived; they are counted as `frames_dropped_send_failed` and not retried. The protocols above
must tolerate both loss and (after a node-level retry) duplication.

HAZARD: `cbor2.loads` ignores bytes after the first cbor item of a payload. Our encoder never
writes trailing bytes; a remote end that does loses them silently.

HAZARD: the fault-injection `filter` on both `PeerTransport` and `Listener` is consulted in the
hot path; it must be cheap and must not raise.
"""

from __future__ import annotations

import collections
import logging
import math
import random
import socket
import struct
from dataclasses import dataclass
from typing import Callable, Iterable, Protocol

import cbor2
import trio

logger = logging.getLogger("spanlite.transport")

PROTOCOL_VERSION = 1
ROLE_PEER = "peer"
ROLE_CLIENT = "client"
ROLES = (ROLE_PEER, ROLE_CLIENT)

FRAME_HEADER = struct.Struct(">I")
FRAME_HEADER_BYTES = FRAME_HEADER.size
MAX_FRAME_BYTES_DEFAULT = 64 * 1024 * 1024
# The header can express at most 2**32 - 1 payload bytes.
MAX_FRAME_BYTES_LIMIT = (1 << 32) - 1
HELLO_BYTES_MAX = 64 * 1024

HANDSHAKE_TIMEOUT_S_DEFAULT = 5.0
CONNECT_TIMEOUT_S_DEFAULT = 5.0

PEER_QUEUE_FRAMES_DEFAULT = 10_000
PEER_QUEUE_BYTES_DEFAULT = 256 * 1024 * 1024
BATCH_BYTES_MAX_DEFAULT = 4 * 1024 * 1024

BACKOFF_MIN_S_DEFAULT = 0.05
BACKOFF_MAX_S_DEFAULT = 2.0

LISTENER_CONNECTIONS_MAX_DEFAULT = 4096
# A peer that stays unreachable is logged on its first failure and every this many after.
FAILURE_LOG_EVERY = 30

RECEIVE_BYTES_MIN = 64 * 1024
RECEIVE_BYTES_MAX = 1024 * 1024


# ---------------------------------------------------------------------------------------------
# Errors


class TransportError(Exception):
    """Base of every error this module raises on purpose (catch it with OSError)."""


class FrameError(TransportError):
    """A remote end sent bytes that are not a valid frame; the connection cannot continue."""


class FrameTooLarge(FrameError):
    """A frame's length header exceeds the receiver's limit (or an encoded frame the sender's)."""


class MalformedFrame(FrameError):
    """A frame's payload is not decodable cbor."""


class ConnectionClosed(TransportError, ConnectionError):
    """The connection ended: closed by the remote end, reset, or closed locally."""


class NodeUnreachable(TransportError, ConnectionError):
    """Dialing a node failed before any handshake: refused, unresolvable, timed out."""


class HandshakeError(TransportError, ConnectionError):
    """The handshake failed: the remote end refused us, or is not who we meant to reach."""


_STREAM_ERRORS = (trio.BrokenResourceError, trio.ClosedResourceError, OSError)


# ---------------------------------------------------------------------------------------------
# Addresses


def parse_address(address: str, *, allow_port_zero: bool = False) -> tuple[str, int]:
    """Split "host:port" (or "[ipv6]:port") into `(host, port)`; ValueError says what is wrong."""
    if not isinstance(address, str):
        raise ValueError(f"an address is a 'host:port' string, got {address!r}")
    text = address.strip()
    if text.startswith("["):
        close = text.find("]")
        if close == -1:
            raise ValueError(f"address {address!r}: '[' without a closing ']' (use '[::1]:26257')")
        host, rest = text[1:close], text[close + 1 :]
        if not rest.startswith(":"):
            raise ValueError(f"address {address!r} has no port: expected '[{host}]:PORT'")
        port_text = rest[1:]
    else:
        host, sep, port_text = text.rpartition(":")
        if not sep:
            raise ValueError(f"address {address!r} has no port: expected 'host:port', e.g. '127.0.0.1:26257'")
        if ":" in host:
            raise ValueError(f"address {address!r}: write an IPv6 host in brackets, e.g. '[::1]:26257'")
    if not host:
        raise ValueError(f"address {address!r} has an empty host: expected 'host:port', e.g. '127.0.0.1:26257'")
    if not port_text.isdigit():
        raise ValueError(f"address {address!r}: port {port_text!r} is not a number")
    port = int(port_text)
    port_min = 0 if allow_port_zero else 1
    if not port_min <= port <= 65535:
        raise ValueError(f"address {address!r}: port {port} is out of range {port_min}..65535")
    return host, port


def parse_address_list(text: str) -> list[str]:
    """`HOST:PORT[,HOST:PORT...]` -> the addresses, each checked; ValueError says what is wrong."""
    addresses = [a.strip() for a in text.split(",") if a.strip()]
    if not addresses:
        raise ValueError("expected HOST:PORT[,HOST:PORT...]")
    for address in addresses:
        parse_address(address)
    return addresses


def format_address(host: str, port: int) -> str:
    """The inverse of `parse_address`."""
    assert 0 <= port <= 65535, f"port out of range: {port}"
    if ":" in host:
        return f"[{host}]:{port}"
    return f"{host}:{port}"


def _remote_address_of(stream: trio.SocketStream) -> str:
    try:
        sockaddr = stream.socket.getpeername()
    except OSError:
        return "<disconnected>"
    return format_address(sockaddr[0], sockaddr[1])


# ---------------------------------------------------------------------------------------------
# Framing


def encode_frame(obj: object, *, max_frame_bytes: int = MAX_FRAME_BYTES_DEFAULT) -> bytes:
    """Length header + cbor payload. Raises FrameTooLarge if the payload exceeds the limit."""
    payload = cbor2.dumps(obj)
    if len(payload) > max_frame_bytes:
        raise FrameTooLarge(
            f"frame of {len(payload)} bytes exceeds the {max_frame_bytes}-byte limit: "
            "split the message or raise max_frame_bytes on every node"
        )
    return FRAME_HEADER.pack(len(payload)) + payload


def _check_frame_limit(max_frame_bytes: int) -> None:
    assert isinstance(max_frame_bytes, int), f"max_frame_bytes must be an int: {max_frame_bytes!r}"
    assert 1 <= max_frame_bytes <= MAX_FRAME_BYTES_LIMIT, f"max_frame_bytes out of range: {max_frame_bytes}"


_NO_FRAME = object()


class FrameDecoder:
    """Sans-I/O frame decoder: `feed(bytes)`, then take frames with `next_frame()`.

    After a FrameError the decoder is poisoned: every later call raises the same error,
    because the byte stream has lost its frame boundaries.
    """

    def __init__(self, max_frame_bytes: int = MAX_FRAME_BYTES_DEFAULT) -> None:
        _check_frame_limit(max_frame_bytes)
        self.max_frame_bytes = max_frame_bytes
        self._buffer = bytearray()
        # Invariant: 0 <= self._start <= len(self._buffer); bytes before _start are consumed.
        self._start = 0
        self._error: FrameError | None = None

    @property
    def buffered_bytes(self) -> int:
        return len(self._buffer) - self._start

    def feed(self, data: bytes) -> None:
        if self._error is not None:
            raise self._error
        if self._start and self._start == len(self._buffer):
            self._buffer.clear()
            self._start = 0
        self._buffer += data

    def missing_bytes(self) -> int:
        """How many more bytes the frame in progress needs (a hint for read sizes)."""
        buffered = self.buffered_bytes
        if buffered < FRAME_HEADER_BYTES:
            return FRAME_HEADER_BYTES - buffered
        (length,) = FRAME_HEADER.unpack_from(self._buffer, self._start)
        return max(0, FRAME_HEADER_BYTES + length - buffered)

    def next_frame(self) -> object:
        """The next complete frame, or the module's `_NO_FRAME` sentinel if none is complete."""
        if self._error is not None:
            raise self._error
        buffered = self.buffered_bytes
        if buffered < FRAME_HEADER_BYTES:
            return _NO_FRAME
        (length,) = FRAME_HEADER.unpack_from(self._buffer, self._start)
        if length > self.max_frame_bytes:
            head = bytes(self._buffer[self._start : self._start + FRAME_HEADER_BYTES])
            self._error = FrameTooLarge(
                f"frame header announces {length} bytes, over the {self.max_frame_bytes}-byte limit "
                f"(header bytes {head!r}: a peer with a larger max_frame_bytes, or not a spanlite peer?)"
            )
            raise self._error
        if buffered < FRAME_HEADER_BYTES + length:
            return _NO_FRAME
        body_start = self._start + FRAME_HEADER_BYTES
        payload = bytes(self._buffer[body_start : body_start + length])
        self._start = body_start + length
        assert self._start <= len(self._buffer), "consumed past the end of the buffer"
        return self._decode(payload)

    def frames(self) -> list[object]:
        """Every complete frame buffered so far, in order."""
        out = []
        while (frame := self.next_frame()) is not _NO_FRAME:
            out.append(frame)
        return out

    def _decode(self, payload: bytes) -> object:
        try:
            return cbor2.loads(payload)
        except Exception as exc:  # cbor2 raises several types (decode errors, tag value errors)
            self._error = MalformedFrame(f"undecodable cbor in a {len(payload)}-byte frame: {exc}")
            raise self._error from exc


class FrameReader:
    """Reads frames from a trio stream. Also an async iterator that ends at a clean close.

    `receive()` raises ConnectionClosed at end of stream (or on reset), FrameError on bad bytes.
    """

    def __init__(self, stream: trio.abc.ReceiveStream, max_frame_bytes: int = MAX_FRAME_BYTES_DEFAULT) -> None:
        self._stream = stream
        self._decoder = FrameDecoder(max_frame_bytes)
        self.bytes_received = 0
        # Set when the remote end closed at a frame boundary (a clean end of stream).
        self.closed_cleanly = False

    @property
    def max_frame_bytes(self) -> int:
        return self._decoder.max_frame_bytes

    @max_frame_bytes.setter
    def max_frame_bytes(self, value: int) -> None:
        _check_frame_limit(value)
        self._decoder.max_frame_bytes = value

    async def receive(self) -> object:
        while True:
            frame = self._decoder.next_frame()
            if frame is not _NO_FRAME:
                return frame
            want = min(RECEIVE_BYTES_MAX, max(RECEIVE_BYTES_MIN, self._decoder.missing_bytes()))
            try:
                data = await self._stream.receive_some(want)
            except (trio.BrokenResourceError, trio.ClosedResourceError) as exc:
                raise ConnectionClosed(f"connection broken: {exc.__cause__ or exc}") from exc
            if not data:
                buffered = self._decoder.buffered_bytes
                if buffered:
                    raise ConnectionClosed(f"connection closed in the middle of a frame ({buffered} bytes buffered)")
                self.closed_cleanly = True
                raise ConnectionClosed("connection closed by the remote end")
            self.bytes_received += len(data)
            self._decoder.feed(data)

    def __aiter__(self) -> "FrameReader":
        return self

    async def __anext__(self) -> object:
        try:
            return await self.receive()
        except ConnectionClosed:
            # A clean close at a frame boundary ends iteration; anything else is an error.
            if self.closed_cleanly:
                raise StopAsyncIteration from None
            raise


# ---------------------------------------------------------------------------------------------
# Handshake


def make_hello(role: str, cluster_id: str | None, node_id: int | None) -> dict:
    assert role in ROLES, f"unknown role {role!r}"
    assert cluster_id is None or isinstance(cluster_id, str), f"cluster_id must be str or None: {cluster_id!r}"
    assert node_id is None or _is_int(node_id), f"node_id must be int or None: {node_id!r}"
    return {"spanlite": PROTOCOL_VERSION, "role": role, "cluster_id": cluster_id, "node_id": node_id}


def make_error_hello(error: str) -> dict:
    assert error, "an error hello must say what was wrong"
    return {"spanlite": PROTOCOL_VERSION, "error": error}


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _hello_shape_problem(hello: object) -> str | None:
    """Why `hello` is not a well-formed hello, or None."""
    if not isinstance(hello, dict):
        return f"expected a hello map as the first frame, got {type(hello).__name__}: is this a spanlite client?"
    version = hello.get("spanlite")
    if version != PROTOCOL_VERSION:
        return f"this node speaks spanlite protocol {PROTOCOL_VERSION}, you speak {version!r}"
    role = hello.get("role")
    if role not in ROLES:
        return f"unknown role {role!r}: expected 'peer' or 'client'"
    cluster_id = hello.get("cluster_id")
    if cluster_id is not None and not isinstance(cluster_id, str):
        return f"cluster_id must be a string or null, got {cluster_id!r}"
    node_id = hello.get("node_id")
    if node_id is not None and not _is_int(node_id):
        return f"node_id must be an integer or null, got {node_id!r}"
    return None


def check_dialer_hello(
    hello: object,
    *,
    cluster_id: str | None,
    node_id: int | None,
    is_known_peer: Callable[[int], bool] | None,
    accepts_peers: bool = True,
    accepts_clients: bool = True,
) -> str | None:
    """The accepting side's verdict on a dialer's hello: None if acceptable, else what is wrong."""
    problem = _hello_shape_problem(hello)
    if problem is not None:
        return problem
    assert isinstance(hello, dict)
    their_cluster = hello["cluster_id"] if "cluster_id" in hello else None
    if cluster_id is not None and their_cluster is not None and their_cluster != cluster_id:
        return (
            f"this node belongs to cluster {cluster_id}, you belong to cluster {their_cluster}: "
            "is the store directory from another cluster?"
        )
    role = hello["role"]
    if role == ROLE_CLIENT:
        if not accepts_clients:
            return "this endpoint does not accept client connections"
        return None
    if not accepts_peers:
        return "this endpoint does not accept peer connections"
    their_node = hello.get("node_id")
    if their_node is None:
        return "a peer hello must carry its node_id"
    if node_id is not None and their_node == node_id:
        return (
            f"node id {their_node} is this node's own id: do two nodes share a store directory "
            "or a --node-id?"
        )
    if is_known_peer is not None and not is_known_peer(their_node):
        return (
            f"node {their_node} is not a member this node knows (cluster {cluster_id}): "
            "was it removed, or is its store directory from another cluster?"
        )
    return None


def check_listener_hello(
    hello: object, *, address: str, cluster_id: str | None, expected_node_id: int | None
) -> dict:
    """The dialing side's check of the accepting side's answer; raises HandshakeError."""
    if not isinstance(hello, dict) or hello.get("spanlite") != PROTOCOL_VERSION:
        raise HandshakeError(f"{address} answered with something that is not a spanlite {PROTOCOL_VERSION} hello: {hello!r:.200}")
    if "error" in hello:
        raise HandshakeError(f"node at {address} refused the connection: {hello['error']}")
    problem = _hello_shape_problem(hello)
    if problem is not None:
        raise HandshakeError(f"node at {address} sent a bad hello: {problem}")
    their_cluster = hello["cluster_id"]
    if cluster_id is not None and their_cluster is not None and their_cluster != cluster_id:
        raise HandshakeError(
            f"node at {address} belongs to cluster {their_cluster}, we belong to cluster {cluster_id}: "
            "does the address list point at another cluster?"
        )
    their_node = hello["node_id"]
    if expected_node_id is not None and their_node is None:
        raise HandshakeError(
            f"dialed {address} expecting node {expected_node_id}, but the node there has not joined "
            "a cluster yet: has `spanlite init` run?"
        )
    if expected_node_id is not None and their_node != expected_node_id:
        raise HandshakeError(
            f"dialed {address} expecting node {expected_node_id}, but node {their_node} answered: "
            "is the address list out of date?"
        )
    return hello


async def _dial(
    address: str,
    hello: dict,
    *,
    cluster_id: str | None,
    expected_node_id: int | None,
    timeout_s: float,
    max_frame_bytes: int,
) -> tuple[trio.SocketStream, FrameReader, dict]:
    """Connect, send our hello, check theirs. Raises NodeUnreachable or HandshakeError."""
    assert timeout_s > 0, f"timeout must be positive: {timeout_s}"
    host, port = parse_address(address)
    try:
        with trio.fail_after(timeout_s):
            stream = await trio.open_tcp_stream(host, port)
    except trio.TooSlowError:
        raise NodeUnreachable(
            f"cannot reach node at {address}: no answer within {timeout_s:g} s — is the host up and the port open?"
        ) from None
    except OSError as exc:
        raise NodeUnreachable(_describe_connect_error(address, exc)) from exc
    try:
        reader = FrameReader(stream, max_frame_bytes=HELLO_BYTES_MAX)
        with trio.fail_after(timeout_s):
            await stream.send_all(encode_frame(hello))
            reply = await reader.receive()
        checked = check_listener_hello(reply, address=address, cluster_id=cluster_id, expected_node_id=expected_node_id)
        reader.max_frame_bytes = max_frame_bytes
        return stream, reader, checked
    except trio.TooSlowError:
        await trio.aclose_forcefully(stream)
        raise HandshakeError(f"node at {address} did not complete the handshake within {timeout_s:g} s") from None
    except HandshakeError:
        await trio.aclose_forcefully(stream)
        raise
    except FrameError as exc:
        await trio.aclose_forcefully(stream)
        raise HandshakeError(f"{address} did not answer with a spanlite hello: {exc}") from exc
    except _STREAM_ERRORS as exc:  # includes ConnectionClosed
        await trio.aclose_forcefully(stream)
        raise NodeUnreachable(f"connection to {address} ended during the handshake: {exc}") from exc
    except BaseException:
        await trio.aclose_forcefully(stream)
        raise


def _describe_connect_error(address: str, exc: OSError) -> str:
    causes: list[BaseException] = [exc]
    if isinstance(exc.__cause__, BaseExceptionGroup):
        causes.extend(exc.__cause__.exceptions)
    if any(isinstance(c, ConnectionRefusedError) for c in causes):
        return f"cannot reach node at {address}: connection refused — is `spanlite start` running there?"
    if isinstance(exc, socket.gaierror):
        return f"cannot reach node at {address}: cannot resolve host ({exc.strerror or exc}) — is the host name right?"
    detail = next((str(c) for c in reversed(causes) if str(c)), repr(exc))
    return f"cannot reach node at {address}: {detail}"


# ---------------------------------------------------------------------------------------------
# Client connections (both ends: the node's side of an accepted client, and the Python client)


class ClientConnection:
    """A framed, handshaken connection used request/response style.

    `receive()` returns the next frame (ConnectionClosed at the end, FrameError on bad bytes;
    after a FrameError the connection is closed). `send(obj)` may be called from several tasks:
    frames queued while another task is writing go out in the same `send_all`.
    """

    def __init__(
        self,
        stream: trio.SocketStream,
        reader: FrameReader,
        *,
        remote_address: str,
        remote_hello: dict,
        max_frame_bytes: int = MAX_FRAME_BYTES_DEFAULT,
    ) -> None:
        self._stream = stream
        self._reader = reader
        self.remote_address = remote_address
        self.remote_hello = remote_hello
        self.max_frame_bytes = max_frame_bytes
        self._outbox: list[bytes] = []
        self._send_lock = trio.StrictFIFOLock()
        self._broken: BaseException | None = None
        self.closed = False

    @property
    def remote_node_id(self) -> int | None:
        return self.remote_hello.get("node_id")

    @property
    def local_address(self) -> str:
        try:
            sockaddr = self._stream.socket.getsockname()
        except OSError:
            return "<closed>"
        return format_address(sockaddr[0], sockaddr[1])

    async def receive(self) -> object:
        if self.closed:
            raise ConnectionClosed(f"connection with {self.remote_address} is closed")
        try:
            return await self._reader.receive()
        except FrameError as exc:
            logger.error("closing connection with %s: %s", self.remote_address, exc)
            await self.aclose()
            raise

    async def send(self, obj: object) -> None:
        await self.send_many((obj,))

    async def send_many(self, objs: Iterable[object]) -> None:
        """Send frames in order; concurrent senders' frames are coalesced into one write."""
        encoded = [encode_frame(obj, max_frame_bytes=self.max_frame_bytes) for obj in objs]
        if self.closed:
            raise ConnectionClosed(f"connection with {self.remote_address} is closed")
        self._outbox.extend(encoded)
        async with self._send_lock:
            if self._broken is not None:
                raise ConnectionClosed(f"connection with {self.remote_address} broke: {self._broken}")
            if not self._outbox:
                return  # an earlier holder of the lock wrote our frames
            data = b"".join(self._outbox)
            self._outbox.clear()
            try:
                await self._stream.send_all(data)
            except BaseException as exc:
                # A failed or cancelled send_all leaves the stream in an unknown state.
                self._broken = exc
                if isinstance(exc, _STREAM_ERRORS):
                    raise ConnectionClosed(f"connection with {self.remote_address} broke: {exc}") from exc
                raise

    async def aclose(self) -> None:
        self.closed = True
        await trio.aclose_forcefully(self._stream)

    async def __aenter__(self) -> "ClientConnection":
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()


async def dial_client(
    address: str,
    *,
    timeout: float = CONNECT_TIMEOUT_S_DEFAULT,
    cluster_id: str | None = None,
    max_frame_bytes: int = MAX_FRAME_BYTES_DEFAULT,
) -> ClientConnection:
    """Connect to a node as a client. Raises NodeUnreachable / HandshakeError (ConnectionErrors)
    whose messages name the address, or ValueError for a malformed address."""
    hello = make_hello(ROLE_CLIENT, cluster_id, None)
    stream, reader, server_hello = await _dial(
        address, hello, cluster_id=cluster_id, expected_node_id=None, timeout_s=timeout, max_frame_bytes=max_frame_bytes
    )
    return ClientConnection(
        stream, reader, remote_address=address, remote_hello=server_hello, max_frame_bytes=max_frame_bytes
    )


# ---------------------------------------------------------------------------------------------
# Listener (inbound side)


class PeerHandler(Protocol):
    def peer_frame(self, from_node: int, frame: object) -> None:
        """Called for every frame from a peer. Synchronous and non-blocking: enqueue and return."""


class ClientHandler(Protocol):
    async def client_connection(self, conn: ClientConnection) -> None:
        """Serve one client connection (runs as its own task); the listener closes it afterwards.

        Transport errors (ConnectionClosed, FrameError) may be left to propagate: the listener
        logs them and closes this connection only.
        """


@dataclass
class ListenerStats:
    connections_accepted: int = 0
    connections_open: int = 0
    connections_refused_limit: int = 0
    handshakes_rejected: int = 0
    handshakes_timed_out: int = 0
    frame_errors: int = 0
    peer_frames_received: int = 0
    peer_bytes_received: int = 0
    peer_frames_dropped_filter: int = 0


class Listener:
    """Accepts peer and client connections on one TCP port.

    Peer frames go to `peer_handler.peer_frame(from_node, frame)`; each client connection runs
    `await client_handler.client_connection(conn)` in its own task. `handler=` gives one object
    that is both. Without a peer (client) handler, peer (client) hellos are refused.
    `node_id`, `cluster_id` and `is_known_peer` are plain attributes: a node that learns its
    identity after it started listening sets them then.

    `filter(from_node, to_node)` — same signature as `PeerTransport.filter`, with `to_node` this
    node's id — drops inbound peer frames when it returns False, so one predicate installed on
    both sides makes a partition symmetric.
    """

    def __init__(
        self,
        *,
        node_id: int | None,
        cluster_id: str | None,
        handler: object | None = None,
        peer_handler: PeerHandler | None = None,
        client_handler: ClientHandler | None = None,
        is_known_peer: Callable[[int], bool] | None = None,
        max_frame_bytes: int = MAX_FRAME_BYTES_DEFAULT,
        handshake_timeout_s: float = HANDSHAKE_TIMEOUT_S_DEFAULT,
        connections_max: int = LISTENER_CONNECTIONS_MAX_DEFAULT,
    ) -> None:
        if handler is not None:
            assert peer_handler is None and client_handler is None, "give handler= or the separate handlers, not both"
            assert callable(getattr(handler, "peer_frame", None)), "handler= needs a peer_frame method"
            assert callable(getattr(handler, "client_connection", None)), "handler= needs a client_connection method"
            peer_handler = client_handler = handler  # type: ignore[assignment]
        _check_frame_limit(max_frame_bytes)
        assert handshake_timeout_s > 0, f"handshake timeout must be positive: {handshake_timeout_s}"
        assert connections_max >= 1, f"connections_max must be at least 1: {connections_max}"
        self.node_id = node_id
        self.cluster_id = cluster_id
        self.peer_handler = peer_handler
        self.client_handler = client_handler
        # None: accept any peer node id except our own.
        self.is_known_peer = is_known_peer
        self.max_frame_bytes = max_frame_bytes
        self.handshake_timeout_s = handshake_timeout_s
        self.connections_max = connections_max
        self.filter: Callable[[int, int], bool] | None = None
        self.port: int | None = None
        self.stats = ListenerStats()
        # At most one inbound connection per peer node; a newer one cancels the older.
        self._peer_scopes: dict[int, trio.CancelScope] = {}

    async def serve(self, host: str, port: int, *, task_status: trio.TaskStatus[int] = trio.TASK_STATUS_IGNORED) -> None:
        """Bind (port 0 picks a free port), report the port via task_status, serve until cancelled."""
        assert 0 <= port <= 65535, f"port out of range: {port}"
        listeners = await trio.open_tcp_listeners(port, host=host)
        assert listeners, f"no listeners bound for {host}:{port}"
        if port == 0 and len(listeners) > 1:
            # Each address family got its own ephemeral port; serve only the first.
            for extra in listeners[1:]:
                await extra.aclose()
            listeners = listeners[:1]
        self.port = listeners[0].socket.getsockname()[1]
        logger.info("listening on %s", format_address(host, self.port))
        try:
            async with trio.open_nursery() as nursery:
                await nursery.start(trio.serve_listeners, self._handle_connection, listeners)
                task_status.started(self.port)
        finally:
            self._peer_scopes.clear()

    async def _handle_connection(self, stream: trio.SocketStream) -> None:
        address = _remote_address_of(stream)
        async with stream:
            if self.stats.connections_open >= self.connections_max:
                self.stats.connections_refused_limit += 1
                logger.warning("refusing connection from %s: %d connections open (the limit)", address, self.connections_max)
                return
            self.stats.connections_accepted += 1
            self.stats.connections_open += 1
            try:
                await self._serve_connection(stream, address)
            finally:
                self.stats.connections_open -= 1
                assert self.stats.connections_open >= 0, "connections_open went negative"

    async def _serve_connection(self, stream: trio.SocketStream, address: str) -> None:
        reader = FrameReader(stream, max_frame_bytes=HELLO_BYTES_MAX)
        hello = await self._handshake(stream, reader, address)
        if hello is None:
            return
        reader.max_frame_bytes = self.max_frame_bytes
        if hello["role"] == ROLE_PEER:
            await self._serve_peer(reader, address, hello["node_id"])
        else:
            await self._serve_client(stream, reader, address, hello)

    async def _handshake(self, stream: trio.SocketStream, reader: FrameReader, address: str) -> dict | None:
        """Read and judge the dialer's hello, answer it. None if the connection must close."""
        problem: str | None = None
        hello: object = None
        with trio.move_on_after(self.handshake_timeout_s) as timeout_scope:
            try:
                hello = await reader.receive()
            except FrameError as exc:
                self.stats.frame_errors += 1
                logger.error("closing connection from %s: bad hello frame: %s", address, exc)
                return None
            except (ConnectionClosed, *_STREAM_ERRORS) as exc:
                logger.debug("connection from %s ended before its hello: %s", address, exc)
                return None
            problem = check_dialer_hello(
                hello,
                cluster_id=self.cluster_id,
                node_id=self.node_id,
                is_known_peer=self.is_known_peer,
                accepts_peers=self.peer_handler is not None,
                accepts_clients=self.client_handler is not None,
            )
            if problem is None:
                reply = make_hello(ROLE_PEER, self.cluster_id, self.node_id)
            else:
                reply = make_error_hello(problem)
            try:
                await stream.send_all(encode_frame(reply))
            except _STREAM_ERRORS as exc:
                logger.debug("connection from %s ended during the handshake: %s", address, exc)
                return None
        if timeout_scope.cancelled_caught:
            self.stats.handshakes_timed_out += 1
            logger.warning("closing connection from %s: no handshake within %g s", address, self.handshake_timeout_s)
            return None
        if problem is not None:
            self.stats.handshakes_rejected += 1
            logger.warning("rejected connection from %s: %s", address, problem)
            return None
        assert isinstance(hello, dict), "an accepted hello is a map"
        return hello

    async def _serve_peer(self, reader: FrameReader, address: str, from_node: int) -> None:
        assert self.peer_handler is not None, "peer accepted without a peer handler"
        assert _is_int(from_node), f"peer node id must be an int: {from_node!r}"
        logger.info("accepted peer connection from node %d at %s", from_node, address)
        with trio.CancelScope() as scope:
            try:
                await self._receive_peer_frames(reader, address, from_node, scope)
            finally:
                if self._peer_scopes.get(from_node) is scope:
                    del self._peer_scopes[from_node]

    def _claim_peer_slot(self, from_node: int, scope: trio.CancelScope, address: str) -> None:
        """Make `scope`'s connection the one inbound connection of `from_node`, closing an older
        one (half-open after a crash, or abandoned by the sender).

        Claimed on the first frame, not at the handshake: a dialer that handshakes and then
        hangs up (it dialed the wrong node id at this address) must not close the live one.
        """
        older = self._peer_scopes.get(from_node)
        if older is scope:
            return
        if older is not None:
            logger.info("node %d now sends from %s; closing its older connection", from_node, address)
            older.cancel()
        self._peer_scopes[from_node] = scope

    async def _receive_peer_frames(
        self, reader: FrameReader, address: str, from_node: int, scope: trio.CancelScope
    ) -> None:
        bytes_seen = reader.bytes_received
        try:
            async for frame in reader:
                if self._peer_scopes.get(from_node) is not scope:
                    self._claim_peer_slot(from_node, scope, address)
                self.stats.peer_bytes_received += reader.bytes_received - bytes_seen
                bytes_seen = reader.bytes_received
                if self.filter is not None and not self.filter(from_node, self.node_id):
                    self.stats.peer_frames_dropped_filter += 1
                    continue
                self.stats.peer_frames_received += 1
                self.peer_handler.peer_frame(from_node, frame)
        except FrameError as exc:
            self.stats.frame_errors += 1
            logger.error("closing connection from node %d at %s: %s", from_node, address, exc)
        except (ConnectionClosed, *_STREAM_ERRORS) as exc:
            logger.info("connection from node %d at %s ended: %s", from_node, address, exc)
        else:
            logger.info("node %d at %s closed its connection", from_node, address)

    async def _serve_client(self, stream: trio.SocketStream, reader: FrameReader, address: str, hello: dict) -> None:
        assert self.client_handler is not None, "client accepted without a client handler"
        conn = ClientConnection(
            stream, reader, remote_address=address, remote_hello=hello, max_frame_bytes=self.max_frame_bytes
        )
        try:
            await self.client_handler.client_connection(conn)
        except* FrameError:
            self.stats.frame_errors += 1  # ClientConnection.receive already logged it
        except* (ConnectionClosed, *_STREAM_ERRORS) as group:
            logger.debug("client connection from %s ended: %s", address, group.exceptions[0])
        finally:
            await conn.aclose()


# ---------------------------------------------------------------------------------------------
# Outbound peer transport


class Backoff:
    """Exponential backoff with jitter: nominal delay min_s doubling up to max_s; each delay is
    drawn uniformly from [nominal/2, nominal] with the injected rng."""

    def __init__(self, rng: random.Random, min_s: float = BACKOFF_MIN_S_DEFAULT, max_s: float = BACKOFF_MAX_S_DEFAULT) -> None:
        assert 0 < min_s <= max_s, f"need 0 < min_s <= max_s, got {min_s}, {max_s}"
        self._rng = rng
        self.min_s = min_s
        self.max_s = max_s
        self.attempts = 0
        self._attempts_to_max = math.ceil(math.log2(max_s / min_s)) if max_s > min_s else 0

    def next_delay_s(self) -> float:
        exponent = min(self.attempts, self._attempts_to_max)
        nominal = min(self.max_s, self.min_s * (2**exponent))
        self.attempts += 1
        delay = nominal * (0.5 + 0.5 * self._rng.random())
        assert 0 < delay <= self.max_s, f"backoff delay out of range: {delay}"
        return delay

    def reset(self) -> None:
        self.attempts = 0


@dataclass
class PeerStats:
    frames_sent: int = 0
    bytes_sent: int = 0
    batches_sent: int = 0
    frames_dropped_queue_full: int = 0
    frames_dropped_filter: int = 0
    frames_dropped_send_failed: int = 0
    connects: int = 0
    connect_failures: int = 0

    @property
    def frames_dropped(self) -> int:
        return self.frames_dropped_queue_full + self.frames_dropped_filter + self.frames_dropped_send_failed

    def add(self, other: "PeerStats") -> None:
        for name in self.__dataclass_fields__:
            setattr(self, name, getattr(self, name) + getattr(other, name))


class _Peer:
    """One remote node: its address, its bounded queue of encoded frames, its sender task."""

    def __init__(self, node_id: int, address: str, stats: PeerStats) -> None:
        self.node_id = node_id
        self.address = address
        self.stats = stats
        self.queue: collections.deque[bytes] = collections.deque()
        # Invariant: queued_bytes == sum(len(f) for f in queue).
        self.queued_bytes = 0
        self.wakeup = trio.Event()
        self.task_scope = trio.CancelScope()
        self.connection_scope: trio.CancelScope | None = None
        self.connected = False
        self.failure_streak = 0

    def enqueue(self, data: bytes) -> None:
        self.queue.append(data)
        self.queued_bytes += len(data)
        self.wakeup.set()

    async def wait_for_frames(self) -> None:
        while not self.queue:
            self.wakeup = trio.Event()
            await self.wakeup.wait()

    def take_batch(self, batch_bytes_max: int) -> tuple[list[bytes], int]:
        assert self.queue, "take_batch on an empty queue"
        batch = [self.queue.popleft()]
        size = len(batch[0])
        while self.queue and size + len(self.queue[0]) <= batch_bytes_max:
            frame = self.queue.popleft()
            batch.append(frame)
            size += len(frame)
        self.queued_bytes -= size
        assert self.queued_bytes >= 0, "queued_bytes went negative"
        return batch, size

    def clear(self) -> None:
        self.queue.clear()
        self.queued_bytes = 0


class PeerTransport:
    """Outbound frames to peer nodes: `send()` queues (never blocks), one sender task per peer
    dials, handshakes, and drains its queue, redialing with backoff after any failure.

    `addresses` maps node id -> "host:port"; an entry for `self_node_id` is ignored.
    `filter(from_node, to_node)`: when set and False, frames are dropped (at `send` and again
    just before writing) and counted in `frames_dropped_filter`.
    """

    def __init__(
        self,
        self_node_id: int,
        cluster_id: str | None,
        addresses: dict[int, str],
        *,
        queue_frames_max: int = PEER_QUEUE_FRAMES_DEFAULT,
        queue_bytes_max: int = PEER_QUEUE_BYTES_DEFAULT,
        batch_bytes_max: int = BATCH_BYTES_MAX_DEFAULT,
        max_frame_bytes: int = MAX_FRAME_BYTES_DEFAULT,
        handshake_timeout_s: float = HANDSHAKE_TIMEOUT_S_DEFAULT,
        backoff_min_s: float = BACKOFF_MIN_S_DEFAULT,
        backoff_max_s: float = BACKOFF_MAX_S_DEFAULT,
        rng: random.Random | None = None,
    ) -> None:
        assert _is_int(self_node_id), f"self_node_id must be an int: {self_node_id!r}"
        assert queue_frames_max >= 1, f"queue_frames_max must be at least 1: {queue_frames_max}"
        assert queue_bytes_max >= 1, f"queue_bytes_max must be at least 1: {queue_bytes_max}"
        assert batch_bytes_max >= 1, f"batch_bytes_max must be at least 1: {batch_bytes_max}"
        _check_frame_limit(max_frame_bytes)
        self.self_node_id = self_node_id
        self.cluster_id = cluster_id
        self.queue_frames_max = queue_frames_max
        self.queue_bytes_max = queue_bytes_max
        self.batch_bytes_max = batch_bytes_max
        self.max_frame_bytes = max_frame_bytes
        self.handshake_timeout_s = handshake_timeout_s
        self.backoff_min_s = backoff_min_s
        self.backoff_max_s = backoff_max_s
        self.rng = rng if rng is not None else random.Random()
        self.filter: Callable[[int, int], bool] | None = None
        # Stats survive a peer's removal and re-addition; keyed by node id.
        self.stats: dict[int, PeerStats] = {}
        self.frames_dropped_unknown_peer = 0
        self.frames_dropped_closed = 0
        self._peers: dict[int, _Peer] = {}
        self._nursery: trio.Nursery | None = None
        self._closed = trio.Event()
        self._hello = make_hello(ROLE_PEER, cluster_id, self_node_id)
        self.update_addresses(addresses)

    # -- the synchronous API used by the node driver --

    def send(self, to_node: int, frame: object) -> bool:
        """Queue `frame` for `to_node`. True if queued; False if dropped (counted)."""
        assert to_node != self.self_node_id, f"node {to_node} sending to itself through the transport"
        if self._closed.is_set():
            self.frames_dropped_closed += 1
            return False
        peer = self._peers.get(to_node)
        if peer is None:
            self.frames_dropped_unknown_peer += 1
            return False
        if self.filter is not None and not self.filter(self.self_node_id, to_node):
            peer.stats.frames_dropped_filter += 1
            return False
        if len(peer.queue) >= self.queue_frames_max or peer.queued_bytes >= self.queue_bytes_max:
            peer.stats.frames_dropped_queue_full += 1
            return False
        peer.enqueue(encode_frame(frame, max_frame_bytes=self.max_frame_bytes))
        return True

    def update_addresses(self, addresses: dict[int, str]) -> None:
        """Replace the address book: start senders for new peers, redial moved ones, stop removed ones."""
        if self._closed.is_set():
            return
        wanted = {node: addr for node, addr in addresses.items() if node != self.self_node_id}
        for node_id, address in wanted.items():
            assert _is_int(node_id), f"node ids must be ints: {node_id!r}"
            parse_address(address)  # raise ValueError now rather than in a sender task
        for node_id in list(self._peers):
            if node_id not in wanted:
                peer = self._peers.pop(node_id)
                peer.task_scope.cancel()
                peer.clear()
        for node_id, address in wanted.items():
            peer = self._peers.get(node_id)
            if peer is None:
                stats = self.stats.setdefault(node_id, PeerStats())
                peer = self._peers[node_id] = _Peer(node_id, address, stats)
                if self._nursery is not None:
                    self._nursery.start_soon(self._peer_loop, peer)
            elif peer.address != address:
                peer.address = address
                if peer.connection_scope is not None:
                    peer.connection_scope.cancel()

    @property
    def addresses(self) -> dict[int, str]:
        return {node_id: peer.address for node_id, peer in self._peers.items()}

    def is_connected(self, node_id: int) -> bool:
        peer = self._peers.get(node_id)
        return peer is not None and peer.connected

    def queued_frames(self, node_id: int) -> int:
        peer = self._peers.get(node_id)
        return 0 if peer is None else len(peer.queue)

    def total_stats(self) -> PeerStats:
        total = PeerStats()
        for stats in self.stats.values():
            total.add(stats)
        return total

    def close(self) -> None:
        """Stop all senders; `run()` returns. Queued frames are discarded."""
        self._closed.set()
        for peer in self._peers.values():
            peer.task_scope.cancel()
            peer.clear()

    # -- the tasks --

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Run every peer's sender until `close()` (or cancellation)."""
        assert self._nursery is None, "PeerTransport.run() is already running"
        try:
            async with trio.open_nursery() as nursery:
                self._nursery = nursery
                for peer in self._peers.values():
                    nursery.start_soon(self._peer_loop, peer)
                task_status.started()
                await self._closed.wait()
                nursery.cancel_scope.cancel()
        finally:
            self._nursery = None

    async def _peer_loop(self, peer: _Peer) -> None:
        backoff = Backoff(self.rng, self.backoff_min_s, self.backoff_max_s)
        with peer.task_scope:
            while True:
                with trio.CancelScope() as connection_scope:
                    peer.connection_scope = connection_scope
                    await self._connect_and_drain(peer, backoff)
                peer.connection_scope = None
                peer.connected = False
                if connection_scope.cancelled_caught:
                    backoff.reset()  # the address changed: redial at once
                    continue
                await trio.sleep(backoff.next_delay_s())

    async def _connect_and_drain(self, peer: _Peer, backoff: Backoff) -> None:
        address = peer.address
        try:
            stream, _reader, _hello = await _dial(
                address,
                self._hello,
                cluster_id=self.cluster_id,
                expected_node_id=peer.node_id,
                timeout_s=self.handshake_timeout_s,
                max_frame_bytes=self.max_frame_bytes,
            )
        except (NodeUnreachable, HandshakeError) as exc:
            peer.stats.connect_failures += 1
            peer.failure_streak += 1
            # Say it loudly once per outage (and now and then while it lasts), not every retry.
            loud = peer.failure_streak == 1 or peer.failure_streak % FAILURE_LOG_EVERY == 0
            level = logging.DEBUG
            if loud:
                level = logging.ERROR if isinstance(exc, HandshakeError) else logging.WARNING
            logger.log(level, "node %d: cannot connect to node %d (attempt %d): %s",
                       self.self_node_id, peer.node_id, peer.failure_streak, exc)
            return
        peer.stats.connects += 1
        peer.connected = True
        logger.info("node %d: connected to node %d at %s%s", self.self_node_id, peer.node_id, address,
                    f" after {peer.failure_streak} failed attempts" if peer.failure_streak else "")
        peer.failure_streak = 0
        backoff.reset()
        async with stream:
            try:
                await self._drain_until_broken(peer, stream)
            except (ConnectionClosed, *_STREAM_ERRORS) as exc:
                logger.info("node %d: connection to node %d at %s lost: %s", self.self_node_id, peer.node_id, address, exc)

    async def _drain_until_broken(self, peer: _Peer, stream: trio.SocketStream) -> None:
        """Write queued frames until the connection fails; then raise what went wrong."""
        failures: list[Exception] = []
        async with trio.open_nursery() as nursery:
            nursery.start_soon(self._watch_for_close, peer, stream, nursery.cancel_scope, failures)
            try:
                await self._drain_forever(peer, stream)
            except _STREAM_ERRORS as exc:
                failures.append(exc)
            nursery.cancel_scope.cancel()
        assert failures, "a peer connection ended without a failure"
        raise failures[0]

    async def _drain_forever(self, peer: _Peer, stream: trio.SocketStream) -> None:
        while True:
            await peer.wait_for_frames()
            batch, size = peer.take_batch(self.batch_bytes_max)
            if self.filter is not None and not self.filter(self.self_node_id, peer.node_id):
                peer.stats.frames_dropped_filter += len(batch)
                continue
            try:
                await stream.send_all(batch[0] if len(batch) == 1 else b"".join(batch))
            except BaseException:
                peer.stats.frames_dropped_send_failed += len(batch)
                raise
            peer.stats.frames_sent += len(batch)
            peer.stats.bytes_sent += size
            peer.stats.batches_sent += 1

    async def _watch_for_close(
        self, peer: _Peer, stream: trio.SocketStream, scope: trio.CancelScope, failures: list[Exception]
    ) -> None:
        """An outbound connection carries nothing back after the handshake: any read result
        (end of stream, reset, stray bytes) means the connection is over."""
        try:
            data = await stream.receive_some(RECEIVE_BYTES_MIN)
        except _STREAM_ERRORS as exc:
            failures.append(exc)
        else:
            if data:
                failures.append(ConnectionClosed(f"node {peer.node_id} sent {len(data)} unexpected bytes on an outbound connection"))
            else:
                failures.append(ConnectionClosed(f"node {peer.node_id} closed the connection"))
        scope.cancel()
