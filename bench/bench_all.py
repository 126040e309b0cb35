"""The project's costs in one table, at 1x, 10x and 100x the default demo volume (`make bench`).
Prints the table (and with `--json PATH` writes the figures for machines); asserts nothing.

Per scale, on a demo warehouse of that volume (`ecm demo --orders-per-day N`, the 35 days it
makes by default, built in bounded memory a few days at a time):

  demo       building the warehouse and the sheet (`ecm demo`, whole process)
  extract    the snapshot query of the live tick (rows: candidate orders)
  classify   classify + attach_catalogue
  qualify    qualify + flag_already_assigned (rows: the actionable backlog)
  score      score
  assign     parse_roster + plan_assignments (rows: tickets planned)
  gates      the snapshot's and the backlog's quality gates (Great Expectations) on those frames
  triage     `ecm triage` of the live tick, whole process, as the schedule runs it
  backfill   `ecm backfill` of the `--backfill-ticks` ticks before the live one, whole process
             (rows: orders snapshotted over those ticks)
  api calls  the triage against the local fake Google Sheets and Slack APIs through the real
             clients (rows: the backlog; detail: the calls)

extract to gates run in one fresh process, in order, each stage's peak RSS being that process's
peak (VmHWM) once the stage is done; every other row is a fresh process of its own. Seconds are
wall seconds. Run from the project root: `.venv/bin/python bench/bench_all.py [--scales 1 10 100]
[--backfill-ticks 3] [--json PATH]`.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
import warnings
from pathlib import Path

from machine import machine, mib, own_peak_rss_bytes, print_machine, run_ecm

ROOT = Path(__file__).resolve().parents[1]
STAGES = ("extract", "classify", "qualify", "score", "assign", "gates")


def stages(home: Path) -> list[dict]:
    """What the `--stages` child does: the live tick's snapshot and the domain chain on it, timed
    stage by stage, as the assets chain them."""
    warnings.filterwarnings("ignore")
    import pandas as pd

    from ecm_pipeline.checks import business_rule_inputs, contract_inputs
    from ecm_pipeline.domain.assignment import plan_assignments
    from ecm_pipeline.domain.classification import attach_catalogue, classify, load_rules
    from ecm_pipeline.domain.qualification import flag_already_assigned, qualify
    from ecm_pipeline.domain.roster import parse_roster
    from ecm_pipeline.domain.scoring import score
    from ecm_pipeline.partitions import as_of_utc, live_tick_key
    from ecm_pipeline.quality import load_suite, suite_path, validate
    from ecm_pipeline.resources import initialized
    from ecm_pipeline.resources.sheet import LocalSheetStore
    from ecm_pipeline.settings import load_catalogue, load_settings
    from ecm_pipeline.snapshot import take_snapshot

    settings = load_settings()
    load_catalogue()
    load_rules()
    key = live_tick_key()
    as_of = as_of_utc(key)
    store = LocalSheetStore(str(home / "sheet.sqlite"))
    tickets, agents = store.read_tab("Assignments"), store.read_tab("Agents")
    rows: list[dict] = []

    def timed(stage: str, fn, *args, **kwargs):
        started = time.perf_counter()
        out = fn(*args, **kwargs)
        rows.append({"stage": stage, "seconds": time.perf_counter() - started, "peak_rss_bytes": own_peak_rss_bytes()})
        return out

    def snapshot():
        with initialized("warehouse") as built:
            return take_snapshot(built["warehouse"], as_of, settings).candidates

    candidates = timed("extract", snapshot)
    rows[-1]["rows"] = len(candidates)
    classified = timed("classify", lambda: attach_catalogue(classify(candidates)))
    rows[-1]["rows"] = len(classified)

    def qualification():
        qualified, _ = qualify(classified, settings.qualification)
        return flag_already_assigned(qualified, tickets, pd.Timestamp(as_of))

    qualified = timed("qualify", qualification)
    rows[-1]["rows"] = len(qualified)
    scored = timed("score", score, qualified, pd.Timestamp(as_of), settings.scoring)
    rows[-1]["rows"] = len(scored)

    def assignment():
        roster, _ = parse_roster(agents, settings.assignment)
        return plan_assignments(scored, roster, tickets, settings.assignment, triage_run=key,
                                assigned_at=f"{as_of:%Y-%m-%d %H:%M:%S}+0000")

    plan = timed("assign", assignment)
    rows[-1]["rows"] = len(plan.new_rows)

    def gates():
        inputs = {"stuck_orders": contract_inputs({key: candidates}),
                  "qualified_orders": business_rule_inputs({key: qualified}, settings)}
        checked = {asset: validate(load_suite(suite_path(asset)), frames, parameters, [key])
                   for asset, (frames, parameters) in inputs.items()}
        return {asset: [o.expectation.check_name for o in outcomes if not o.passed]
                for asset, outcomes in checked.items()}

    failing = timed("gates", gates)
    failed = ", ".join(f"{asset}.{check}" for asset, checks in failing.items() for check in checks)
    rows[-1] |= {"rows": len(candidates) + len(qualified),
                 "detail": f"Great Expectations' import included; failing: {failed or 'none'}"}
    return rows


def api_calls(home: Path) -> dict:
    """What the `--api` child does: the live tick's triage against the fakes; its figures."""
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from bench_api_calls import lift_stop_gate, triage_against_fakes

    lift_stop_gate()
    started = time.perf_counter()
    figures = triage_against_fakes(home, agents=7)
    sheets, slack = sum(figures["sheets"].values()), sum(figures["slack"].values())
    return {"stage": "api calls", "rows": figures["qualified"], "seconds": time.perf_counter() - started,
            "peak_rss_bytes": own_peak_rss_bytes(),
            "detail": f"{'ok' if figures['ok'] else 'FAILED'}: {sheets} Sheets calls, {slack} Slack calls, "
                      f"{figures['assigned']} assigned"}


def child(option: str, home: Path, env: dict[str, str]) -> object:
    """This script with `option` in a fresh interpreter; its JSON result."""
    with tempfile.NamedTemporaryFile("r", suffix=".json") as out:
        done = subprocess.run([sys.executable, __file__, option, str(home), "--out", out.name], cwd=ROOT, env=env,
                              capture_output=True, text=True)
        if done.returncode != 0:
            raise SystemExit(f"{option} {home} failed ({done.returncode}):\n{done.stderr[-3000:]}")
        return json.loads(out.read())


def lake_rows(home: Path, asset: str, keys: list[str] | None = None) -> int:
    """Rows of an asset's lake files (of the partitions `keys`, or all), from their footers."""
    import pyarrow.parquet as pq

    folder = home / "lake" / asset
    paths = [folder / f"{k}.parquet" for k in keys] if keys else folder.glob("*.parquet")
    return sum(pq.ParquetFile(path).metadata.num_rows for path in paths)


def measure(scale: float, base: Path, backfill_ticks: int) -> list[dict]:
    from ecm_pipeline.demo import DEFAULT_ORDERS_PER_DAY

    home = base / f"scale-{scale:g}"
    # The backlog's stop gate (2,000 orders) is set for one day's normal volume: above 1x the demo's
    # backlog is past it by design, so the runs lift it (`ECM_SETTINGS`), as bench_api_calls.py does.
    overlay = base / f"settings-{scale:g}.yaml"
    overlay.write_text(f"gates: {{backlog_stop: {max(2000, round(2000 * scale * 2))}}}\n")
    env = {**os.environ, "ECM_HOME": str(home), "DAGSTER_HOME": str(home / "dagster"), "ECM_SETTINGS": str(overlay),
           "PYTHONWARNINGS": "ignore"}
    per_day = round(DEFAULT_ORDERS_PER_DAY * scale)
    rows = []

    def ecm(stage: str, args: list[str], count=None, detail: str = "") -> dict:
        run = run_ecm(args, env, ROOT)
        if run["code"] != 0:
            raise SystemExit(f"ecm {' '.join(args)} at scale {scale:g} failed ({run['code']}):\n"
                             f"{run['stderr'][-3000:]}")
        row = {"stage": stage, "seconds": run["wall_seconds"], "peak_rss_bytes": run["peak_rss_bytes"],
               "rows": count() if count else None, "detail": detail}
        rows.append(row)
        return run

    def orders() -> int:
        import duckdb

        with duckdb.connect(str(home / "warehouse.duckdb"), read_only=True) as con:
            return con.execute("SELECT count(*) FROM orders_goms").fetchone()[0]

    ecm("demo", ["demo", "--orders-per-day", str(per_day)], orders, f"{per_day:,} orders a day")
    rows += child("--stages", home, env)
    rows.append(child("--api", home, env))   # before `ecm triage`: the fakes start from the demo's Sheet
    ecm("triage", ["triage"], lambda: lake_rows(home, "stuck_orders"), "the live tick, whole process")
    keys = json.loads(subprocess.run(
        [sys.executable, "-c", "import json; from ecm_pipeline.partitions import triage_partitions as p, "
         "live_tick_key as live; keys = p.get_partition_keys(); i = keys.index(live()); "
         f"print(json.dumps(keys[i - {backfill_ticks}:i]))"], env=env, cwd=ROOT, capture_output=True, text=True,
        check=True).stdout)
    ecm("backfill", ["backfill", "--from", keys[0], "--to", keys[-1]], lambda: lake_rows(home, "stuck_orders", keys),
        f"{len(keys)} ticks, {keys[0]} .. {keys[-1]}")
    return [{**r, "scale": scale} for r in rows]


def print_table(results: list[dict]) -> None:
    print(f"\n{'stage':<10} {'scale':>6} {'rows':>12} {'seconds':>9} {'peak RSS':>13}  detail")
    order = ["demo", *STAGES, "triage", "backfill", "api calls"]
    for row in sorted(results, key=lambda r: (order.index(r["stage"]), r["scale"])):
        rows = f"{row['rows']:,}" if row.get("rows") is not None else "-"
        print(f"{row['stage']:<10} {row['scale']:>5g}x {rows:>12} {row['seconds']:>9.2f} "
              f"{mib(row['peak_rss_bytes']):>13}  {row.get('detail', '')}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scales", type=float, nargs="+", default=[1, 10, 100])
    parser.add_argument("--backfill-ticks", type=int, default=3)
    parser.add_argument("--json", type=Path, help="also write the figures as JSON here")
    parser.add_argument("--stages", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--api", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--out", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.stages or args.api:
        result = stages(args.stages) if args.stages else api_calls(args.api)
        args.out.write_text(json.dumps(result))
        return

    print_machine()
    results: list[dict] = []
    with tempfile.TemporaryDirectory(prefix="ecm-bench-all-") as base:
        for scale in args.scales:
            print(f"\n== {scale:g}x the default volume", flush=True)
            measured = measure(scale, Path(base), args.backfill_ticks)
            print_table(measured)
            results += measured
    print("\n== all scales")
    print_table(results)
    if args.json:
        args.json.write_text(json.dumps({"machine": machine(), "results": results}, indent=2, default=str))
        print(f"\nfigures written to {args.json}")


if __name__ == "__main__":
    main()
