"""What the quality gates cost on the default demo. Prints figures; asserts nothing.

1. Import time, each in a fresh interpreter: `ecm_pipeline.definitions` (what every code-server
   load and `ecm` command pays; it must not import GX) and `great_expectations` (paid once per
   process, on the first validation).
2. Validation time per gate (stuck_orders, qualified_orders, assignments) on a default-volume demo
   warehouse triaged at one tick (GX already imported by that run): first call and median of 5 more.

Run from the project root: `.venv/bin/python bench/bench_gates.py`.
"""

from __future__ import annotations

import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import datetime
from pathlib import Path

IMPORT_PROBE = ("import time, sys; t = time.perf_counter(); import {module}; "
                "print(time.perf_counter() - t, 'great_expectations' in sys.modules)")


def import_seconds(module: str, runs: int = 3) -> tuple[float, bool]:
    results = []
    for _ in range(runs):
        out = subprocess.run([sys.executable, "-c", IMPORT_PROBE.format(module=module)], capture_output=True,
                             text=True, check=True)
        seconds, gx_loaded = out.stdout.split()
        results.append((float(seconds), gx_loaded == "True"))
    return statistics.median(s for s, _ in results), results[-1][1]


def main() -> None:
    print("== machine")
    print(f"platform  {platform.platform()}; python {platform.python_version()}; cpus {os.cpu_count()}")
    print("\n== import (fresh interpreter, median of 3)")
    for module in ("ecm_pipeline.definitions", "great_expectations"):
        seconds, gx_loaded = import_seconds(module)
        print(f"{module:<26} {seconds:6.2f} s   great_expectations loaded: {gx_loaded}")

    import warnings

    warnings.filterwarnings("ignore")
    import dagster as dg

    from ecm_pipeline.assets import triage_assets
    from ecm_pipeline.checks import quality_gates
    from ecm_pipeline.demo import generate_demo
    from ecm_pipeline.domain.gate_frames import assignment_frames, backlog_frames
    from ecm_pipeline.domain.roster import parse_roster
    from ecm_pipeline.quality import load_suite, suite_path, validate
    from ecm_pipeline.resources import environment_resources
    from ecm_pipeline.resources.lake import LakeResource
    from ecm_pipeline.resources.sheet import LocalSheetStore
    from ecm_pipeline.settings import load_catalogue, load_settings
    from ecm_pipeline.snapshot import SNAPSHOT_COLUMNS

    home = Path(tempfile.mkdtemp(prefix="ecm-bench-"))
    os.environ["ECM_HOME"] = str(home)
    key = "2026-11-21-14:00"
    generate_demo(home, seed=7, anchor=datetime(2026, 11, 21, 10, 0))
    result = dg.materialize([*triage_assets, *quality_gates], partition_key=key, resources=environment_resources(),
                            instance=dg.DagsterInstance.ephemeral(), tags={"dagster/backfill": "bench"})
    assert result.success
    lake, settings = LakeResource(), load_settings()
    store = LocalSheetStore(str(home / "sheet.sqlite"))
    roster, _ = parse_roster(store.read_tab("Agents"), settings.assignment)
    import pandas as pd

    gates = {
        "stuck_orders": ({"orders": lake.read("stuck_orders", key)},
                         {"as_of": pd.Timestamp("2026-11-21 10:00"), "snapshot_columns": list(SNAPSHOT_COLUMNS)}),
        "qualified_orders": (backlog_frames(lake.read("qualified_orders", key), settings.qualification),
                             {"currencies": list(settings.snapshot.currencies),
                              "stuck_reasons": list(load_catalogue().reasons)}),
        "assignments": (assignment_frames(lake.read("assignments", key), store.read_tab("Assignments"),
                                          lake.read("assignment_agents", key), roster), {}),
    }
    print(f"\n== validation on the default demo at {key} "
          f"({len(gates['stuck_orders'][0]['orders'])} candidates, "
          f"{len(gates['qualified_orders'][0]['orders'])} qualified)")
    for asset, (frames, parameters) in gates.items():
        suite = load_suite(suite_path(asset))
        timings = []
        for _ in range(6):
            start = time.perf_counter()
            outcomes = validate(suite, frames, parameters)
            timings.append(time.perf_counter() - start)
        failed = [o.expectation.check_name for o in outcomes if not o.passed]
        print(f"{asset:<17} {len(suite.expectations):2d} checks  first {timings[0]:.3f} s  "
              f"median {statistics.median(timings[1:]):.3f} s  failing: {failed or 'none'}")


if __name__ == "__main__":
    main()
