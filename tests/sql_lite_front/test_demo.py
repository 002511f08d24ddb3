"""`spanlite demo` and `spanlite sql` as a user runs them: subprocesses, -e or standard input,
output that can be piped on, and exit status 1 when a statement failed."""

import csv
import io
import itertools
import json
import subprocess
import sys

import trio

from cluster.embedded import EmbeddedCluster
from sql_lite_front.example import EXAMPLE_STATEMENTS, ORDERS

CLI = [sys.executable, "-m", "cluster.cli"]


def spanlite(*args, stdin=""):
    return subprocess.run(CLI + list(args), input=stdin, capture_output=True, text=True, timeout=60)


def test_demo_runs_statements_against_the_example_database_and_prints_only_results():
    done = spanlite("demo", "-e", "SELECT count(*) AS n FROM orders")
    assert (done.returncode, done.stderr) == (0, "")
    assert done.stdout == f"  n\n-----\n {ORDERS}\n(1 row)\n"


def test_demo_reads_standard_input_and_starts_empty_without_the_example():
    done = spanlite("demo", "--no-example", stdin="SELECT 1 AS one;\n\\dt\n")
    assert (done.returncode, done.stderr) == (0, "")
    assert done.stdout == " one\n-----\n   1\n(1 row)\nDid not find any relations.\n"


def test_the_example_spans_four_ranges_and_the_banner_statements_run():
    assert EXAMPLE_STATEMENTS[0] == "SHOW RANGES FROM TABLE orders;"
    done = spanlite("demo", "--format", "csv", "-e", "\n".join(EXAMPLE_STATEMENTS))
    assert (done.returncode, done.stderr) == (0, "")
    lines = list(csv.reader(io.StringIO(done.stdout)))
    assert lines[0] == ["range_id", "start_key", "end_key", "replicas", "leaseholder"]
    ranges = list(itertools.takewhile(lambda line: len(line) == 5, lines[1:]))
    assert len(ranges) >= 4 and ranges[-1][1:3] == ["/orders/1/181", "/Max"]


def test_a_failed_statement_makes_the_exit_status_1_and_the_rest_still_runs():
    done = spanlite("demo", "--no-example", "--format", "json", "-e", "SELECT 1 AS a; SELEC 2; SELECT 3 AS a")
    assert done.returncode == 1
    assert [json.loads(line) for line in done.stdout.splitlines()] == [{"a": 1}, {"a": 3}]
    assert "ERROR:  syntax error" in done.stderr and "SQLSTATE: 42601" in done.stderr


def test_demo_refuses_a_bad_node_count():
    done = spanlite("demo", "--nodes", "0", "-e", "SELECT 1")
    assert done.returncode == 1 and "--nodes must be between 1 and 9" in done.stderr


async def test_sql_against_a_running_cluster_exits_1_only_when_a_statement_failed():
    async with EmbeddedCluster(nodes=1) as cluster:
        host = cluster.addresses[0]

        async def sql(*args, stdin=b""):
            return await trio.run_process(CLI + ["sql", "--host", host, *args], stdin=stdin, capture_stdout=True,
                                          capture_stderr=True, check=False)

        created = await sql("-e", "CREATE TABLE t (k INT PRIMARY KEY); INSERT INTO t VALUES (1), (2)")
        assert (created.returncode, created.stdout) == (0, b"CREATE TABLE\nINSERT 0 2\n")
        failed = await sql(stdin=b"INSERT INTO t VALUES (1);\nSELECT count(*) AS n FROM t;\n")
        assert failed.returncode == 1
        assert failed.stderr.decode().startswith("<stdin>:1: ERROR:  duplicate key value violates unique constraint")
        assert failed.stdout == b" n\n---\n 2\n(1 row)\n"
