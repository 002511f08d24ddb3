"""Real `spanlite start` processes on loopback, driven through the CLI and the client."""

from __future__ import annotations

import json
import signal
import socket
import subprocess
import sys
import time

import pytest
import trio

from cluster.client import connect

SPANLITE = [sys.executable, "-m", "cluster.cli"]


def _free_ports(n: int) -> list[int]:
    sockets = []
    for _ in range(n):
        s = socket.socket()
        s.bind(("127.0.0.1", 0))
        sockets.append(s)
    ports = [s.getsockname()[1] for s in sockets]
    for s in sockets:
        s.close()
    return ports


class ProcessCluster:
    def __init__(self, tmp_path, n: int = 3) -> None:
        self.tmp_path = tmp_path
        self.ports = _free_ports(n)
        self.addresses = [f"127.0.0.1:{p}" for p in self.ports]
        self.procs: list[subprocess.Popen | None] = [None] * n

    def start(self, i: int) -> None:
        log = open(self.tmp_path / f"node{i}.log", "ab")
        self.procs[i] = subprocess.Popen(
            SPANLITE + ["start", "--store", str(self.tmp_path / f"store{i}"), "--listen", self.addresses[i],
                        "--join", ",".join(self.addresses)],
            stdout=log, stderr=subprocess.STDOUT)

    def kill9(self, i: int) -> None:
        proc = self.procs[i]
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        self.procs[i] = None

    def stop_all(self) -> None:
        for proc in self.procs:
            if proc is not None:
                proc.terminate()
        for proc in self.procs:
            if proc is not None:
                try:
                    proc.wait(timeout=10)
                except subprocess.TimeoutExpired:
                    proc.kill()

    def cli(self, *args: str, check: bool = True, timeout: float = 60) -> subprocess.CompletedProcess:
        result = subprocess.run(SPANLITE + list(args), capture_output=True, text=True, timeout=timeout)
        if check and result.returncode != 0:
            raise AssertionError(f"spanlite {' '.join(args)} failed ({result.returncode}): {result.stderr}")
        return result

    def wait_listening(self, timeout: float = 20) -> None:
        deadline = time.monotonic() + timeout
        for port in self.ports:
            while True:
                try:
                    socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
                    break
                except OSError:
                    if time.monotonic() > deadline:
                        raise
                    time.sleep(0.05)


@pytest.fixture
def processes(tmp_path):
    cluster = ProcessCluster(tmp_path)
    try:
        for i in range(3):
            cluster.start(i)
        cluster.wait_listening()
        yield cluster
    finally:
        cluster.stop_all()


def test_init_kv_status_and_kill9_recovery(processes):
    hosts = ",".join(processes.addresses)
    result = processes.cli("init", "--host", processes.addresses[0])
    assert "initialized" in result.stdout
    again = processes.cli("init", "--host", processes.addresses[0], check=False)
    assert again.returncode == 1 and "already initialized" in again.stderr

    processes.cli("kv", "--host", hosts, "put", "hello", "world")
    assert processes.cli("kv", "--host", hosts, "get", "hello").stdout.strip() == "world"
    missing = processes.cli("kv", "--host", hosts, "get", "nope", check=False)
    assert missing.returncode == 1 and missing.stdout == ""

    async def write_many():
        async with connect(processes.addresses) as db:
            async with trio.open_nursery() as nursery:
                for i in range(16):
                    nursery.start_soon(_write_keys, db, i)

    trio.run(write_many)

    status = json.loads(processes.cli("status", "--host", processes.addresses[1], "--json").stdout)
    assert [n["live"] for n in status["nodes"]] == [True, True, True]
    assert status["ranges"][0]["replicas"] == [1, 2, 3]

    for i in range(3):  # kill -9 of every node: nothing acknowledged may be lost
        processes.kill9(i)
    for i in range(3):
        processes.start(i)
    processes.wait_listening()

    async def check_all():
        async with connect(processes.addresses, timeout_s=30) as db:
            rows = dict(await db.scan(b"p", b"q"))
            assert len(rows) == 16 * 10
            assert await db.get(b"hello") == b"world"

    trio.run(check_all)

    leaseholder = _user_range_leaseholder(processes, hosts)
    processes.kill9(leaseholder - 1)
    started = time.monotonic()
    survivors = ",".join(a for i, a in enumerate(processes.addresses) if i != leaseholder - 1)
    processes.cli("kv", "--host", survivors, "put", "after-kill", "1")
    assert time.monotonic() - started < 5.0 + 2.0  # 5 s budget plus process start-up of the CLI


def _user_range_leaseholder(processes, hosts: str) -> int:
    """The leaseholder of the range holding user keys (the one the writes just used)."""
    deadline = time.monotonic() + 10
    while True:
        status = json.loads(processes.cli("status", "--host", hosts, "--json").stdout)
        holders = [r["leaseholder"] for r in status["ranges"] if r["end_key"] == "\\xff\\xff"]
        if holders and holders[0] is not None:
            return holders[0]
        assert time.monotonic() < deadline, f"no leaseholder for the user range: {status}"
        time.sleep(0.2)


async def _write_keys(db, i: int) -> None:
    for j in range(10):
        await db.put(b"p%02d-%02d" % (i, j), b"v")


def test_bad_command_lines_give_one_line_errors(tmp_path):
    result = subprocess.run(SPANLITE + ["kv", "--host", "nohostport", "get", "k"], capture_output=True, text=True)
    assert result.returncode == 2 and "HOST:PORT" in result.stderr
    result = subprocess.run(SPANLITE + ["start", "--bogus"], capture_output=True, text=True)
    assert result.returncode == 2
    port = _free_ports(1)[0]
    result = subprocess.run(SPANLITE + ["kv", "--host", f"127.0.0.1:{port}", "--timeout", "1s", "get", "k"],
                            capture_output=True, text=True, timeout=30)
    assert result.returncode == 1 and "cannot reach" in result.stderr


def test_store_of_another_cluster_is_refused(tmp_path):
    first = ProcessCluster(tmp_path / "a")
    second = ProcessCluster(tmp_path / "b")
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    try:
        for cluster in (first, second):
            for i in range(3):
                cluster.start(i)
            cluster.wait_listening()
            cluster.cli("init", "--host", cluster.addresses[0])
        first.kill9(0)
        result = subprocess.run(
            SPANLITE + ["start", "--store", str(first.tmp_path / "store0"), "--listen", "127.0.0.1:0",
                        "--join", ",".join(second.addresses)], capture_output=True, text=True, timeout=60)
        assert result.returncode == 1
        assert "belongs to cluster" in result.stderr and "empty --store" in result.stderr
    finally:
        first.stop_all()
        second.stop_all()
