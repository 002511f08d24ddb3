"""The `spanlite chaos` command line (cluster/cli.py wires `add_chaos_parser` / `cmd_chaos`).

    spanlite chaos --nodes 5 --duration 60s --workload register|bank|append
                   --nemesis kill,pause,partition,skew[,split] [--seed S] [--history FILE]
                   [--inject-bug NAME] [--dir DIR] [--keep] [--workers N] [--max-offset D] [--json]

"""

from __future__ import annotations

import argparse
import json
import random
import signal
import sys
from pathlib import Path

from clock.settings import DEFAULT_MAX_OFFSET_NS, format_duration, parse_duration
from cluster.chaos.nemesis import NEMESES, parse_nemeses
from cluster.chaos.workloads import WORKLOADS
from cluster.sim.bugs import KNOWN_BUGS

DURATION_MIN_S = 5.0


def _duration_s(text: str) -> float:
    try:
        seconds = parse_duration(text) / 1e9
    except ValueError as e:
        raise argparse.ArgumentTypeError(str(e)) from None
    if seconds < DURATION_MIN_S:
        raise argparse.ArgumentTypeError(f"--duration must be at least {DURATION_MIN_S:g}s, got {text}")
    return seconds


def _max_offset_ns(text: str) -> int:
    try:
        return parse_duration(text)
    except ValueError as e:
        raise argparse.ArgumentTypeError(str(e)) from None


def _nemeses(text: str) -> tuple[str, ...]:
    try:
        return parse_nemeses(text)
    except ValueError as e:
        raise argparse.ArgumentTypeError(str(e)) from None


def _bug(name: str) -> str:
    if name not in KNOWN_BUGS:
        raise argparse.ArgumentTypeError(f"unknown bug {name!r}; known: {', '.join(KNOWN_BUGS)}")
    return name


def add_chaos_parser(subparsers) -> argparse.ArgumentParser:
    chaos = subparsers.add_parser(
        "chaos", help="fault-injection test: real node processes, a workload, a nemesis, a checked history",
        description="Start a cluster of real node processes on loopback, run a workload against it while a "
                    "seeded nemesis kills, pauses, partitions and skews the nodes, then check the recorded "
                    "history. Exit 0: valid; 1: a violation; 2: the cluster could not be set up.")
    chaos.add_argument("--nodes", type=int, default=5, help="3 to 9 (default 5)")
    chaos.add_argument("--duration", type=_duration_s, default=60.0, metavar="DURATION",
                       help="how long the workload runs under faults, like 60s or 10m (default 60s)")
    chaos.add_argument("--workload", choices=sorted(WORKLOADS), default="register")
    chaos.add_argument("--nemesis", type=_nemeses, default=NEMESES, metavar="KINDS",
                       help=f"comma-separated faults: {','.join(NEMESES)} (default all; `none` for none)")
    chaos.add_argument("--seed", type=int, default=None, help="seeds the fault schedule and the op mix")
    chaos.add_argument("--history", type=Path, default=None, metavar="FILE",
                       help="where to write the history (JSON lines; default DIR/history.jsonl)")
    chaos.add_argument("--inject-bug", type=_bug, action="append", default=[], metavar="NAME",
                       help="start the nodes with a planted bug the checkers must catch: " + ", ".join(KNOWN_BUGS))
    chaos.add_argument("--dir", type=Path, default=None, metavar="DIR",
                       help="stores, node logs and history (default: a fresh temp dir, removed after a valid run)")
    chaos.add_argument("--keep", action="store_true", help="keep the temp dir after a valid run")
    chaos.add_argument("--workers", type=int, default=16, help="concurrent client processes (default 16)")
    chaos.add_argument("--max-offset", type=_max_offset_ns, default=DEFAULT_MAX_OFFSET_NS, metavar="DURATION",
                       help=f"the nodes' max clock offset (default {format_duration(DEFAULT_MAX_OFFSET_NS)})")
    chaos.add_argument("--json", action="store_true", help="print the result as one JSON object at the end")
    return chaos


def cmd_chaos(args) -> int:
    from cluster.chaos.runner import ChaosConfig, run_chaos

    if not 1 <= args.workers <= 200:
        print("error: --workers must be between 1 and 200", file=sys.stderr)
        return 2
    seed = args.seed if args.seed is not None else random.randrange(1 << 31)
    config = ChaosConfig(nodes=args.nodes, duration_s=args.duration, workload=args.workload, nemeses=args.nemesis,
                         seed=seed, max_offset_ns=args.max_offset, bugs=tuple(args.inject_bug), workers=args.workers,
                         directory=args.dir, history_path=args.history, keep=args.keep)
    # SIGTERM ends the run like Ctrl-C does: through the cleanup that stops every node.
    previous = signal.signal(signal.SIGTERM, _raise_keyboard_interrupt)
    try:
        outcome = run_chaos(config, log=lambda line: print(line, flush=True))
    except KeyboardInterrupt:
        print("chaos: interrupted; every node was stopped", file=sys.stderr)
        return 130
    finally:
        signal.signal(signal.SIGTERM, previous)
    for line in outcome.lines:
        print(line)
    if args.json:
        print(json.dumps(outcome.report))
    if outcome.exit_code != 0:
        print(f"rerun with: --seed {seed} (the fault schedule; op timing differs run to run)")
    return outcome.exit_code


def _raise_keyboard_interrupt(signum, frame) -> None:
    raise KeyboardInterrupt


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m cluster.chaos.cli")
    add_chaos_parser(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(["chaos", *(sys.argv[1:] if argv is None else argv)])
    return cmd_chaos(args)


if __name__ == "__main__":
    sys.exit(main())
