"""`spanlite bench sql`: SQL vs KV latency, side by side (a tiny run; figures are not asserted)."""

import json

from bench import cli
from tests.bench.test_cli import run_bench


def test_a_small_embedded_run_reports_every_operation(tmp_path, capsys):
    out = tmp_path / "sql.json"
    assert run_bench(["sql", "--embedded", "--rows", "20", "--ops", "5", "--runs", "2", "--json", str(out)]) == 0
    printed = capsys.readouterr().out
    for label in ("SQL point SELECT", "KV get", "SQL 1-row UPDATE", "KV txn get+put", "KV put", "SQL/KV p50"):
        assert label in printed
    figures = json.loads(out.read_text())
    assert len(figures["runs"]) == 2
    assert all(figures["median"][op]["samples"] == 10 for op in figures["median"])


def test_sql_latency_needs_a_cluster_and_positive_counts(capsys):
    assert run_bench(["sql", "--rows", "10"]) == cli.EXIT_USAGE
    assert "--host" in capsys.readouterr().err
    assert run_bench(["sql", "--embedded", "--ops", "0"]) == cli.EXIT_USAGE
    assert "--ops must be at least 1" in capsys.readouterr().err
