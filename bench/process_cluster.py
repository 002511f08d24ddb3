"""A multi-process spanlite cluster on loopback, for benchmarks: `spanlite bench cluster ...`.

    spanlite bench cluster start --nodes 3 --dir DIR [--base-port P] [--max-offset D]
    spanlite bench cluster status --dir DIR
    spanlite bench cluster stop --dir DIR

`start` runs one `python -m cluster.cli start` process per node, detached (own session), so
the nodes outlive the command and the benchmark client does not share a Python process (or
a GIL) with the servers. Layout of DIR:

    DIR/cluster.json        pids, addresses, store paths, max offset (written by `start`)
    DIR/node{i}/store       node i's store (i = 1..N, the node ids `init` assigns)
    DIR/node{i}/node.log    node i's stdout and stderr

`start` on a DIR whose nodes are all stopped restarts them on the same addresses: each store
remembers the cluster's node addresses, so the ports must not change.

HAZARD: pids are recycled by the kernel. Before signalling a pid from cluster.json we check
(on Linux, through /proc) that it is still a node process started with this store path, so
a stale cluster.json never makes `stop` kill an unrelated process.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import trio

from clock.settings import DEFAULT_MAX_OFFSET_NS, format_duration

CLUSTER_FILE = "cluster.json"
HOST = "127.0.0.1"
NODES_MAX = 9
PORT_WAIT_S = 30.0
INIT_WAIT_S = 30.0
READY_WAIT_S = 30.0
STOP_GRACE_S = 10.0
KILL_WAIT_S = 5.0
POLL_INTERVAL_S = 0.05
LOG_TAIL_LINES = 5
# The key written by the readiness probe (the embedded cluster's probe uses the same one).
READY_KEY = b"\x00spanlite-ready"


class ProcessClusterError(Exception):
    """An expected failure (port in use, nothing to stop, ...): printed as one line."""


@dataclass
class NodeRecord:
    """One node process as recorded in cluster.json."""

    node: int
    pid: int
    address: str
    store: str
    log: str


@dataclass
class ClusterRecord:
    """The contents of DIR/cluster.json."""

    nodes: list[NodeRecord]
    max_offset: str
    max_offset_ns: int

    @property
    def addresses(self) -> list[str]:
        return [n.address for n in self.nodes]


# ---------------------------------------------------------------------------------------
# cluster.json


def cluster_file(directory: Path) -> Path:
    return directory / CLUSTER_FILE


def read_record(directory: Path) -> ClusterRecord | None:
    path = cluster_file(directory)
    if not path.exists():
        return None
    try:
        data = json.loads(path.read_text())
        nodes = [NodeRecord(**n) for n in data["nodes"]]
        return ClusterRecord(nodes, data["max_offset"], data["max_offset_ns"])
    except (ValueError, KeyError, TypeError) as e:
        raise ProcessClusterError(f"{path} is not a cluster file written by `bench cluster start`: {e}") from None


def write_record(directory: Path, record: ClusterRecord) -> None:
    # Write then rename, so a crash never leaves a half-written file that hides live pids.
    path = cluster_file(directory)
    temporary = path.with_suffix(".json.tmp")
    temporary.write_text(json.dumps(asdict(record), indent=2) + "\n")
    os.replace(temporary, path)


# ---------------------------------------------------------------------------------------
# processes


def node_is_alive(node: NodeRecord) -> bool:
    """True if node.pid runs and is this node's process (not a zombie, not a recycled pid)."""
    try:
        os.kill(node.pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return False  # Someone else's process: the pid was recycled.
    proc = Path(f"/proc/{node.pid}")
    if not proc.exists():
        return True  # No /proc (not Linux): the signal probe is all we have.
    try:
        state = (proc / "stat").read_text().rsplit(")", 1)[1].split()[0]
        cmdline = (proc / "cmdline").read_bytes().split(b"\0")
    except (OSError, IndexError):
        return False  # It exited while we looked.
    return state not in ("Z", "X") and node.store.encode() in cmdline


def live_nodes(record: ClusterRecord) -> list[NodeRecord]:
    return [n for n in record.nodes if node_is_alive(n)]


def spawn_node(node: int, store: Path, address: str, join: list[str], max_offset: str, log: Path) -> int:
    """Start one detached node process; returns its pid."""
    command = [sys.executable, "-m", "cluster.cli", "start", "--store", str(store), "--listen", address,
               "--join", ",".join(join), "--max-offset", max_offset]
    with open(log, "ab") as log_file:
        process = subprocess.Popen(command, stdin=subprocess.DEVNULL, stdout=log_file, stderr=subprocess.STDOUT,
                                   start_new_session=True, close_fds=True)
    assert process.pid > 0, f"node {node}: no pid from Popen"
    return process.pid


def stop_nodes(nodes: list[NodeRecord], grace_s: float = STOP_GRACE_S) -> list[NodeRecord]:
    """SIGTERM, wait up to grace_s, then SIGKILL what is left; returns the nodes that were SIGKILLed."""
    for node in nodes:
        _signal(node, signal.SIGTERM)
    remaining = _wait_exit(nodes, grace_s)
    for node in remaining:
        _signal(node, signal.SIGKILL)
    still_alive = _wait_exit(remaining, KILL_WAIT_S)
    if still_alive:
        pids = ", ".join(str(n.pid) for n in still_alive)
        raise ProcessClusterError(f"pids {pids} survived SIGKILL for {KILL_WAIT_S:.0f}s")
    return remaining


def _signal(node: NodeRecord, signum: int) -> None:
    try:
        os.kill(node.pid, signum)
    except ProcessLookupError:
        pass  # Already gone: that is what we wanted.


def _wait_exit(nodes: list[NodeRecord], timeout_s: float) -> list[NodeRecord]:
    deadline = time.monotonic() + timeout_s
    alive = list(nodes)
    while alive:
        for node in alive:
            _reap_if_child(node.pid)
        alive = [n for n in alive if node_is_alive(n)]
        if not alive or time.monotonic() >= deadline:
            break
        time.sleep(POLL_INTERVAL_S)
    return alive


def _reap_if_child(pid: int) -> None:
    # When `start` ran in this very process (tests), the nodes are our children: reap them
    # so they do not linger as zombies. Only these pids: other children are not ours to reap.
    try:
        os.waitpid(pid, os.WNOHANG)
    except ChildProcessError:
        pass  # Not our child (the usual case: `start` ran in another process).


def log_tail(path: str, lines: int = LOG_TAIL_LINES) -> str:
    try:
        text = Path(path).read_text(errors="replace").strip().splitlines()
    except OSError:
        return "(no log)"
    return " | ".join(text[-lines:]) or "(empty log)"


# ---------------------------------------------------------------------------------------
# ports


def port_is_free(port: int) -> bool:
    with socket.socket() as probe:
        # As the node's listener does (trio sets SO_REUSEADDR): a port whose old connections
        # linger in TIME_WAIT after a stop is free to listen on again.
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((HOST, port))
        except OSError:
            return False
    return True


def free_ports(count: int) -> list[int]:
    """Ports the kernel hands out now. HAZARD: another process may take one before the node binds it."""
    sockets = [socket.socket() for _ in range(count)]
    try:
        for s in sockets:
            s.bind((HOST, 0))
        return [s.getsockname()[1] for s in sockets]
    finally:
        for s in sockets:
            s.close()


def choose_ports(nodes: int, base_port: int | None, previous: ClusterRecord | None) -> list[int]:
    """A restart reuses the recorded ports (stores remember addresses); else base_port.. or free ones."""
    if previous is not None:
        ports = [int(address.rsplit(":", 1)[1]) for address in previous.addresses]
        if base_port is not None and ports[0] != base_port:
            raise ProcessClusterError(
                f"this directory's cluster uses ports {ports[0]}..{ports[-1]}; its stores remember them, "
                "so --base-port cannot change them (use a new --dir)")
    elif base_port is not None:
        if not 1 <= base_port <= 65535 - nodes + 1:
            raise ProcessClusterError(f"--base-port {base_port} leaves no room for {nodes} ports")
        ports = list(range(base_port, base_port + nodes))
    else:
        return free_ports(nodes)
    for port in ports:
        if not port_is_free(port):
            raise ProcessClusterError(f"port {port} on {HOST} is in use; pick another --base-port or stop its owner")
    return ports


def wait_listening(nodes: list[NodeRecord], timeout_s: float = PORT_WAIT_S) -> None:
    deadline = time.monotonic() + timeout_s
    for node in nodes:
        host, port = node.address.rsplit(":", 1)
        while not _accepts(host, int(port)):
            if not node_is_alive(node):
                raise ProcessClusterError(f"node {node.node} (pid {node.pid}) exited: {log_tail(node.log)}")
            if time.monotonic() >= deadline:
                raise ProcessClusterError(f"node {node.node} does not accept connections on {node.address} "
                                          f"after {timeout_s:.0f}s: {log_tail(node.log)}")
            time.sleep(POLL_INTERVAL_S)


def _accepts(host: str, port: int) -> bool:
    try:
        socket.create_connection((host, port), timeout=0.5).close()
    except OSError:
        return False
    return True


# ---------------------------------------------------------------------------------------
# trio


def run_trio(async_fn, *args):
    """`trio.run`, re-raising a lone exception out of the nursery ExceptionGroups around it.

    trio wraps whatever leaves a nursery (the client's `connect` has one) in an
    ExceptionGroup; a command's caller wants the one error to print as one line.
    """
    try:
        return trio.run(async_fn, *args)
    except BaseExceptionGroup as group:
        sole = sole_exception(group)
        if sole is None:
            raise
        raise sole from None


def sole_exception(error: BaseException) -> BaseException | None:
    """The single leaf of nested one-member ExceptionGroups (or `error` itself); None if several."""
    while isinstance(error, BaseExceptionGroup):
        if len(error.exceptions) != 1:
            return None
        error = error.exceptions[0]
    return error


# ---------------------------------------------------------------------------------------
# init and readiness, through the public client


async def init_cluster(addresses: list[str], timeout_s: float = INIT_WAIT_S) -> bool:
    """`init` through the first node; True if it bootstrapped, False if it was already initialized."""
    with trio.fail_after(timeout_s):
        while True:
            initialized = await _try_init(addresses[0], timeout_s)
            if initialized is not None:
                return initialized
            await trio.sleep(0.2)  # The node is up but its peers are not yet reachable.


async def _try_init(address: str, timeout_s: float) -> bool | None:
    """True: bootstrapped; False: already initialized; None: not yet possible, try again."""
    from cluster.client import connect
    from ranges.api import AlreadyInitialized, Unavailable

    # The errors are caught inside `connect`: past its nursery they arrive in an ExceptionGroup.
    async with connect([address], timeout_s=timeout_s) as db:
        try:
            await db.init()
        except AlreadyInitialized:
            return False  # A restart of an existing DIR.
        except Unavailable:
            return None
    return True


async def wait_serving(addresses: list[str], timeout_s: float = READY_WAIT_S) -> None:
    """Until a write and a read go through: a leaseholder is serving."""
    from cluster.client import connect

    with trio.fail_after(timeout_s):
        async with connect(addresses, timeout_s=timeout_s) as db:
            await db.put(READY_KEY, b"1")
            value = await db.get(READY_KEY)
    assert value == b"1", f"readiness probe read back {value!r}"


# ---------------------------------------------------------------------------------------
# the commands


def start_cluster(directory: Path, nodes: int, *, base_port: int | None = None,
                  max_offset_ns: int = DEFAULT_MAX_OFFSET_NS) -> ClusterRecord:
    """Start (or restart) the cluster of `directory`; returns once it serves reads and writes."""
    if not 1 <= nodes <= NODES_MAX:
        raise ProcessClusterError(f"--nodes must be between 1 and {NODES_MAX}, got {nodes}")
    previous = _check_restartable(directory, nodes)
    ports = choose_ports(nodes, base_port, previous)
    record = _spawn_all(directory, ports, max_offset_ns)
    try:
        wait_listening(record.nodes)
        run_trio(_init_and_wait, record)
    except BaseException as e:
        stop_nodes(live_nodes(record))  # Never leave half a cluster running behind an error.
        if isinstance(e, trio.TooSlowError):
            raise ProcessClusterError(f"the cluster did not start serving within {READY_WAIT_S:.0f}s; "
                                      f"see {directory}/node*/node.log") from None
        raise
    return record


async def _init_and_wait(record: ClusterRecord) -> None:
    await init_cluster(record.addresses)
    await wait_serving(record.addresses)


def _check_restartable(directory: Path, nodes: int) -> ClusterRecord | None:
    previous = read_record(directory)
    if previous is None:
        return None
    running = live_nodes(previous)
    if running:
        pids = ", ".join(str(n.pid) for n in running)
        raise ProcessClusterError(f"{directory} already has a running cluster (pids {pids}); "
                                  f"stop it first: spanlite bench cluster stop --dir {directory}")
    if len(previous.nodes) != nodes:
        raise ProcessClusterError(f"{directory} holds a {len(previous.nodes)}-node cluster; restart it with "
                                  f"--nodes {len(previous.nodes)} or use a new --dir")
    return previous


def _spawn_all(directory: Path, ports: list[int], max_offset_ns: int) -> ClusterRecord:
    addresses = [f"{HOST}:{port}" for port in ports]
    max_offset = format_duration(max_offset_ns)
    record = ClusterRecord([], max_offset, max_offset_ns)
    for i, address in enumerate(addresses, start=1):
        node_dir = directory / f"node{i}"
        node_dir.mkdir(parents=True, exist_ok=True)
        store, log = node_dir / "store", node_dir / "node.log"
        pid = spawn_node(i, store, address, addresses, max_offset, log)
        record.nodes.append(NodeRecord(i, pid, address, str(store), str(log)))
        write_record(directory, record)  # After every spawn: `stop` can always find each pid.
    return record


def stop_cluster(directory: Path) -> tuple[list[NodeRecord], list[NodeRecord]]:
    """Stop every running node of `directory`; returns (stopped, of which SIGKILLed)."""
    record = read_record(directory)
    if record is None:
        raise ProcessClusterError(f"nothing to stop: {cluster_file(directory)} does not exist")
    running = live_nodes(record)
    if not running:
        raise ProcessClusterError(f"nothing to stop: no node of {directory} is running")
    killed = stop_nodes(running)
    return running, killed


def cluster_status(directory: Path) -> list[tuple[NodeRecord, bool]]:
    record = read_record(directory)
    if record is None:
        raise ProcessClusterError(f"no cluster in {directory}: {cluster_file(directory)} does not exist")
    return [(node, node_is_alive(node)) for node in record.nodes]
