"""The chaos tool's node processes: real `spanlite start` processes on loopback, one store
directory each, that the nemesis kills (-9), restarts, pauses and resumes.

Adapted from `bench/process_cluster.py` (which starts detached nodes that outlive their
command); the differences are what a fault-injection run needs:

- Nodes are children of this process (`subprocess.Popen`), never detached: the runner
  must kill every one of them on every exit path. Three layers make sure no node outlives
  a run: `ChaosCluster` is a context manager whose exit kills all nodes; each node is
  started with `PR_SET_PDEATHSIG(SIGKILL)`, so the kernel kills it if the runner dies
  without cleaning up (even by SIGKILL); and pids are only ever signalled while their
  `Popen` has not been reaped, so a recycled pid is never hit.
- Nodes run in their own session, so a Ctrl-C in the terminal reaches only the runner,
  which then stops them itself (after recording what it must).
- Every node gets `--enable-chaos-admin` (partitions and clock skew by admin request) and
  the planted bugs of `--inject-bug`.

Layout of DIR: `DIR/node{i}/store` (node i's store), `DIR/node{i}/node.log` (its output,
appended across restarts).

HAZARD: ports come from `free_ports()`; another process may take one before the node binds
it. A restart reuses the node's port (its peers know it by address); the node's listener
sets SO_REUSEADDR, so a port in TIME_WAIT is reusable at once.
"""

from __future__ import annotations

import ctypes
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import trio

from bench.process_cluster import HOST, free_ports, init_cluster, log_tail, wait_serving
from clock.settings import format_duration

NODES_MAX = 9
LISTEN_WAIT_S = 30.0
SERVING_WAIT_S = 60.0
STOP_GRACE_S = 3.0
POLL_INTERVAL_S = 0.05
_PR_SET_PDEATHSIG = 1


class ChaosSetupError(Exception):
    """The cluster could not be started (exit code 2 of `spanlite chaos`)."""


@dataclass
class NodeProcess:
    node_id: int
    address: str
    store: Path
    log: Path
    popen: subprocess.Popen | None = None
    paused: bool = False
    killed: bool = False  # by the nemesis: an exit without it is a crash
    starts: int = 0

    @property
    def running(self) -> bool:
        return self.popen is not None and self.popen.poll() is None


@dataclass
class ChaosCluster:
    """N node processes on loopback; `with ChaosCluster(...) as cluster:` kills them all at exit."""

    directory: Path
    nodes: int
    max_offset_ns: int
    bugs: tuple[str, ...] = ()
    log_level: str = "info"
    members: dict[int, NodeProcess] = field(default_factory=dict)
    # Nodes that exited without being killed: (node id, exit code, tail of its log).
    crashes: list[tuple[int, int, str]] = field(default_factory=list)

    def __post_init__(self) -> None:
        if not 3 <= self.nodes <= NODES_MAX:
            raise ChaosSetupError(f"--nodes must be between 3 and {NODES_MAX} (a majority must survive a "
                                  f"minority of faults), got {self.nodes}")
        ports = free_ports(self.nodes)
        for node_id, port in enumerate(ports, start=1):
            node_dir = self.directory / f"node{node_id}"
            node_dir.mkdir(parents=True, exist_ok=True)
            self.members[node_id] = NodeProcess(node_id, f"{HOST}:{port}", node_dir / "store", node_dir / "node.log")

    def __enter__(self) -> "ChaosCluster":
        return self

    def __exit__(self, *exc) -> None:
        self.stop_all()

    @property
    def addresses(self) -> list[str]:
        return [self.members[i].address for i in sorted(self.members)]

    @property
    def node_ids(self) -> list[int]:
        return sorted(self.members)

    def address_of(self, node_id: int) -> str:
        return self.members[node_id].address

    # ------------------------------------------------------------------ start

    async def start(self) -> None:
        """Spawn every node, bootstrap the cluster, wait until it serves a write and a read."""
        for node_id in self.node_ids:
            self._spawn(self.members[node_id])
        try:
            await self.wait_listening(self.node_ids)
            with trio.fail_after(SERVING_WAIT_S):
                await init_cluster(self.addresses)
                await wait_serving(self.addresses, timeout_s=SERVING_WAIT_S)
        except trio.TooSlowError:
            raise ChaosSetupError(f"the cluster did not start serving within {SERVING_WAIT_S:.0f}s; "
                                  f"see {self.directory}/node*/node.log") from None

    def _spawn(self, member: NodeProcess) -> None:
        assert not member.running, f"node {member.node_id} is already running (pid {member.popen.pid})"
        self._note_crash(member)
        command = [sys.executable, "-m", "cluster.cli", "start", "--store", str(member.store),
                   "--listen", member.address, "--join", ",".join(self.addresses),
                   "--max-offset", format_duration(self.max_offset_ns), "--enable-chaos-admin",
                   "--log-level", self.log_level]
        for bug in self.bugs:
            command += ["--inject-bug", bug]
        with open(member.log, "ab") as log_file:
            log_file.write(f"--- chaos: start #{member.starts + 1} of node {member.node_id} "
                           f"at {time.strftime('%H:%M:%S')}\n".encode())
            log_file.flush()
            member.popen = subprocess.Popen(
                command, stdin=subprocess.DEVNULL, stdout=log_file, stderr=subprocess.STDOUT,
                start_new_session=True, close_fds=True, preexec_fn=_die_with_parent)
        member.starts += 1
        member.paused = member.killed = False

    def _note_crash(self, member: NodeProcess) -> None:
        if member.popen is not None and member.popen.poll() is not None and not member.killed:
            self.crashes.append((member.node_id, member.popen.returncode, log_tail(str(member.log))))
            member.killed = True  # noted once

    def note_crashes(self) -> list[tuple[int, int, str]]:
        """Record nodes that exited by themselves since the last look; returns all crashes so far."""
        for member in self.members.values():
            self._note_crash(member)
        return self.crashes

    async def wait_listening(self, node_ids: list[int], timeout_s: float = LISTEN_WAIT_S) -> None:
        deadline = time.monotonic() + timeout_s
        for node_id in node_ids:
            member = self.members[node_id]
            host, port = member.address.rsplit(":", 1)
            while not await _accepts(host, int(port)):
                if not member.running:
                    raise ChaosSetupError(f"node {node_id} exited during startup: {log_tail(str(member.log))}")
                if time.monotonic() >= deadline:
                    raise ChaosSetupError(f"node {node_id} does not accept connections on {member.address} "
                                          f"after {timeout_s:.0f}s: {log_tail(str(member.log))}")
                await trio.sleep(POLL_INTERVAL_S)

    # ------------------------------------------------------------------ faults

    def kill(self, node_ids: list[int]) -> None:
        """kill -9 (a paused node dies too) and reap."""
        for node_id in node_ids:
            member = self.members[node_id]
            if member.running:
                member.popen.send_signal(signal.SIGKILL)
                member.killed = True
        for node_id in node_ids:
            member = self.members[node_id]
            if member.popen is not None:
                member.popen.wait()
            member.paused = False

    async def restart(self, node_ids: list[int]) -> None:
        """Start the killed nodes of `node_ids` again on their store and port."""
        restarted = [n for n in node_ids if not self.members[n].running]
        for node_id in restarted:
            self._spawn(self.members[node_id])
        await self.wait_listening(restarted)

    def pause(self, node_ids: list[int]) -> None:
        for node_id in node_ids:
            member = self.members[node_id]
            if member.running:
                member.popen.send_signal(signal.SIGSTOP)
                member.paused = True

    def resume(self, node_ids: list[int]) -> None:
        for node_id in node_ids:
            member = self.members[node_id]
            if member.running:
                member.popen.send_signal(signal.SIGCONT)
            member.paused = False

    def down(self) -> list[int]:
        """Nodes that are not running (killed, or exited by themselves)."""
        return [n for n in self.node_ids if not self.members[n].running]

    # ------------------------------------------------------------------ stop

    def stop_all(self) -> None:
        """SIGCONT + SIGTERM every node, SIGKILL what is left after a short grace; reap all.
        Safe to call more than once and from any exit path."""
        self.note_crashes()
        running = [m for m in self.members.values() if m.running]
        for member in running:
            member.killed = True
            member.popen.send_signal(signal.SIGCONT)
            member.popen.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + STOP_GRACE_S
        for member in running:
            try:
                member.popen.wait(timeout=max(0.0, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                member.popen.kill()
                member.popen.wait()
            member.paused = False


def _load_prctl():
    # Looked up once in the parent: the child between fork and exec should do as little as possible.
    try:
        return ctypes.CDLL(None, use_errno=True).prctl
    except (OSError, AttributeError):
        return None  # Not Linux: the context manager's cleanup is all there is.


_PRCTL = _load_prctl()


def _die_with_parent() -> None:
    """In the child before exec: the kernel SIGKILLs it when the runner dies (Linux)."""
    if _PRCTL is not None:
        _PRCTL(_PR_SET_PDEATHSIG, int(signal.SIGKILL), 0, 0, 0)


async def _accepts(host: str, port: int) -> bool:
    try:
        with trio.move_on_after(0.5) as scope:
            stream = await trio.open_tcp_stream(host, port)
            await stream.aclose()
    except OSError:
        return False
    return not scope.cancelled_caught
