"""What a history backfill costs: `ecm backfill` over the last 1, 30 and 270 ticks (about 1, 10
and 90 days) of a demo warehouse, each in a fresh process and a fresh Dagster instance, as a data
engineer runs it. Prints a report; asserts nothing.

Per range: wall seconds of the whole command (imports, the run, the summary), seconds per tick, the
ratio to one tick (the fixed costs — Python and GX imports, settings, one warehouse connection —
are paid once per run, so 30 ticks should cost far less than 30 single ticks), the process's peak
RSS, and the seconds of each step of the run as Dagster recorded them.

Run from the project root: `.venv/bin/python bench/bench_backfill.py [--ticks 1,30,270] [--days 95]
[--scale 1.0] [--seed 7] [--json PATH]`.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from datetime import datetime
from pathlib import Path

from machine import machine, mib, print_machine, run_ecm

ROOT = Path(__file__).resolve().parents[1]
ANCHOR = datetime(2026, 11, 21, 16, 0)   # the 20:00 Asia/Dubai tick of 2026-11-21, in UTC


def run_backfill(home: Path, first: str, last: str, postgres: dict[str, str] | None = None) -> dict:
    """`ecm backfill` in a child process with its own DAGSTER_HOME (SQLite, the local default; or
    with `postgres`, production's deploy/dagster.yaml on a fresh database); its wall time and peak RSS."""
    for stale in ("lake", "charts", "dagster"):
        shutil.rmtree(home / stale, ignore_errors=True)
    env = {**os.environ, "ECM_HOME": str(home), "DAGSTER_HOME": str(home / "dagster")}
    if postgres:
        env.update(postgres, DAGSTER_PG_DB=fresh_database(postgres))
        (home / "dagster").mkdir()
        shutil.copy(ROOT / "deploy" / "dagster.yaml", home / "dagster" / "dagster.yaml")
    run = run_ecm(["backfill", "--from", first, "--to", last], env, Path.cwd())
    if run["code"] != 0:
        raise SystemExit(f"ecm backfill {first}..{last} failed ({run['code']}):\n{run['stderr'][-2000:]}")
    summary = run["stdout"].strip().splitlines()[-2:]
    return {"wall_seconds": round(run["wall_seconds"], 2), "peak_rss_bytes": run["peak_rss_bytes"],
            "steps": step_seconds(home / "dagster", postgres and env), "summary": summary}


def postgres_server(directory: Path) -> tuple[object, dict[str, str]]:
    """A local PostgreSQL (the pgserver wheel the tests use) and the DAGSTER_PG_* variables of
    deploy/dagster.yaml pointing at it (the unix socket directory through PGHOST)."""
    import pgserver
    import sqlalchemy as sa

    server = pgserver.get_server(str(directory), cleanup_mode="stop")
    socket_dir = sa.engine.make_url(server.get_uri()).query["host"]
    return server, {"DAGSTER_PG_HOST": "", "DAGSTER_PG_PORT": "5432", "DAGSTER_PG_USER": "postgres",
                    "DAGSTER_PG_PASSWORD": "", "PGHOST": socket_dir}


def fresh_database(postgres: dict[str, str]) -> str:
    import uuid

    import psycopg2

    name = f"ecm_dagster_{uuid.uuid4().hex[:8]}"
    conn = psycopg2.connect(dbname="postgres", user="postgres", host=postgres["PGHOST"])
    conn.autocommit = True
    with conn.cursor() as cur:
        cur.execute(f"CREATE DATABASE {name}")
    conn.close()
    return name


def step_seconds(dagster_home: Path, env: dict[str, str] | None = None) -> dict[str, float]:
    import dagster as dg

    if env:   # the instance's database, as the run had it
        os.environ.update({k: v for k, v in env.items() if k.startswith("DAGSTER_PG_") or k == "PGHOST"})
    with dg.DagsterInstance.from_config(str(dagster_home)) as instance:
        [run] = instance.get_runs(limit=1)
        return {s.step_key: round((s.end_time or 0) - (s.start_time or 0), 2)
                for s in instance.get_run_step_stats(run.run_id)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ticks", default="1,30,270", help="comma-separated range lengths, ascending")
    parser.add_argument("--days", type=float, default=95.0, help="days of demo data (a 270-tick range needs 90+30)")
    parser.add_argument("--scale", type=float, default=1.0, help="demo volume, 1.0 = about 3,000 orders a day")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--json", type=Path, help="also write the figures as JSON here")
    parser.add_argument("--instance", choices=["sqlite", "postgres"], default="sqlite",
                        help="the Dagster instance's storage: the local default (SQLite) or production's "
                             "deploy/dagster.yaml on a local PostgreSQL")
    args = parser.parse_args()
    lengths = sorted(int(n) for n in args.ticks.split(","))

    home = Path(tempfile.mkdtemp(prefix="ecm-bench-backfill-"))
    os.environ["ECM_HOME"] = str(home)          # before ecm_pipeline reads its settings
    from ecm_pipeline.demo import generate_demo

    print_machine()
    started = time.perf_counter()
    info = generate_demo(home, seed=args.seed, anchor=ANCHOR, days=args.days, scale=args.scale)
    print(f"\n== data\ndemo warehouse: {info['orders']:,} orders over {args.days:g} days (scale {args.scale:g}, "
          f"seed {args.seed}), generated in {time.perf_counter() - started:.1f} s\n")

    keys = subprocess.run([sys.executable, "-c", "from ecm_pipeline.partitions import triage_partitions as p; "
                           "print('\\n'.join(p.get_partition_keys()))"],
                          env={**os.environ}, capture_output=True, text=True, check=True).stdout.split()
    last = keys.index(next(k for k in reversed(keys) if k <= "2026-11-21-20:00"))
    server, postgres = postgres_server(home / "pgdata") if args.instance == "postgres" else (None, None)
    results = []
    for n in lengths:
        if n > last + 1:
            print(f"{n} ticks: the data has only {last + 1} ticks; skipped")
            continue
        first = keys[last - n + 1]
        figures = run_backfill(home, first, keys[last], postgres)
        figures |= {"ticks": n, "first": first, "last": keys[last]}
        results.append(figures)
        print(f"{n:>4} ticks ({first} .. {keys[last]}): {figures['wall_seconds']:.1f} s", flush=True)

    base = results[0]["wall_seconds"] / results[0]["ticks"] if results else 0
    if server is not None:
        server.cleanup()
    print(f"\n== ecm backfill, one run per range, Dagster instance on {args.instance}")
    print(f"{'ticks':>6} {'wall s':>8} {'s/tick':>8} {'x 1 tick':>9} {'peak RSS':>12}")
    for r in results:
        rss = mib(r["peak_rss_bytes"])
        print(f"{r['ticks']:>6} {r['wall_seconds']:>8.1f} {r['wall_seconds'] / r['ticks']:>8.2f} "
              f"{r['wall_seconds'] / base:>9.1f} {rss:>12}")
    print("\n== seconds per step of the run")
    steps = sorted({s for r in results for s in r["steps"]}, key=lambda s: results[-1]["steps"].get(s, 0),
                   reverse=True)
    print(f"{'step':<44}" + "".join(f"{r['ticks']:>8}" for r in results))
    for step in steps:
        print(f"{step:<44}" + "".join(f"{r['steps'].get(step, 0):>8.1f}" for r in results))
    if args.json:
        args.json.write_text(json.dumps({"machine": machine(), "orders": info["orders"], "days": args.days,
                                         "scale": args.scale, "results": results}, indent=2, default=str))
        print(f"\nfigures written to {args.json}")
    shutil.rmtree(home, ignore_errors=True)


if __name__ == "__main__":
    main()
