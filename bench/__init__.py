"""bench: the YCSB core workloads A-F against the spanlite client.

- `bench.generators`: YCSB's key and operation generators (site.ycsb.generator.*).
- `bench.workloads`: the workload presets and CoreWorkload's operation stream.
- `bench.report`: HDR latency histograms and YCSB's text/JSON results.
- `bench.runner`: `run_ycsb`, the trio load/run driver.

bench talks only to the public client API (put/get/delete/scan, optionally transaction()).
"""

from bench.report import Measurements, Report, format_progress
from bench.runner import run_ycsb
from bench.workloads import WORKLOADS, CoreWorkload, Op, Workload, workload_preset

__all__ = [
    "WORKLOADS",
    "CoreWorkload",
    "Measurements",
    "Op",
    "Report",
    "Workload",
    "format_progress",
    "run_ycsb",
    "workload_preset",
]
