"""What closed tickets cost a triage run, before and after archiving. Prints figures; asserts nothing.

For 0, 100,000 and 300,000 closed tickets (RESOLVED, assigned 90 days ago) added to the demo's local
sheet: `ecm triage` of the live tick (which archives them) and then the next run (a re-run of the
tick, with the tab back to open work), each in a fresh process: wall seconds, peak RSS, the sheet
file's size and the rows left in Assignments.

Run from the project root: `.venv/bin/python bench/bench_archive.py [--rows 0 100000 300000]`.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sqlite3
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from machine import mib, print_machine  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


WRAPPER = ("import resource, subprocess, sys; subprocess.run([sys.executable, '-m', 'ecm_pipeline.cli', 'triage'], "
           "check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL); "
           "print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)")


def run(env: dict[str, str]) -> tuple[float, float]:
    """One `ecm triage` in its own process (under a wrapper that reports only its peak): (wall
    seconds, peak RSS in bytes)."""
    start = time.perf_counter()
    out = subprocess.run([sys.executable, "-c", WRAPPER], cwd=ROOT, env=env, check=True, capture_output=True,
                         text=True)
    return time.perf_counter() - start, int(out.stdout.strip()) * 1024


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, nargs="+", default=[0, 100_000, 300_000])
    args = parser.parse_args()
    print_machine()
    from ecm_pipeline.demo import generate_demo
    from ecm_pipeline.partitions import as_of_utc, live_tick_key
    from ecm_pipeline_tests.test_archive import seeded

    work = Path(tempfile.mkdtemp(prefix="ecm-bench-archive-"))
    template = work / "template"
    generate_demo(template, seed=7, anchor=as_of_utc(live_tick_key()))
    print(f"\n{'closed rows':>11} {'run':>16} {'wall s':>7} {'peak RSS':>11} {'sheet MiB':>10} {'rows left':>10}")
    try:
        for rows in args.rows:
            home = work / f"rows-{rows}"
            shutil.copytree(template, home)
            if rows:
                import ecm_pipeline_tests.test_archive as t

                t.OLD_CLOSED, t.RECENT_CLOSED = rows, 0
                seeded(home)
            env = {**os.environ, "ECM_HOME": str(home), "DAGSTER_HOME": str(home / "dagster")}
            env.pop("ECM_SETTINGS", None)
            for label in ("archiving", "after archiving"):
                seconds, peak = run(env)
                with sqlite3.connect(home / "sheet.sqlite") as con:
                    left = con.execute("SELECT COUNT(*) FROM Assignments").fetchone()[0]
                size = (home / "sheet.sqlite").stat().st_size
                print(f"{rows:>11,} {label:>16} {seconds:>7.1f} {mib(peak):>11} {size / 2**20:>10.1f} {left:>10,}",
                      flush=True)
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
