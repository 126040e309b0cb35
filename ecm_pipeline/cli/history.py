"""`ecm backfill --from KEY --to KEY`: rebuild the snapshot-to-scored chain and the backlog history
for a range of past ticks in one Dagster run (as a backfill from the asset graph does), with a
progress bar, a summary table and the chart's path. Never writes the Sheet or posts."""

from __future__ import annotations

import argparse
import os
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import timedelta

import pandas as pd

from ecm_pipeline.cli.instance import fail_dead_runs, open_instance, run_tags, stderr, warnings_of
from ecm_pipeline.cli.pipeline import failure_message
from ecm_pipeline.partitions import as_of_utc, keys_between
from ecm_pipeline.run_context import RANGE_END, RANGE_START
from ecm_pipeline.settings import load_settings

PER_TICK_ROWS = 21   # longer ranges are summarised per day
MAX_WARNINGS = 5     # a long range repeats the same warning per tick; the run's log keeps them all


class BackfillError(ValueError):
    """A range the warehouse cannot describe; one line."""


def _checked_warehouse_span(keys: list[str]) -> list[str]:
    """Fail in one line when there is no warehouse or the range lies outside its data; return
    notes for ticks it only partly covers."""
    from ecm_pipeline.resources import initialized
    from ecm_pipeline.snapshot import data_span

    settings = load_settings()
    with initialized("warehouse") as built:
        span = data_span(built["warehouse"])
    if span is None:
        raise BackfillError("the warehouse holds no orders: nothing to backfill")
    first_order, newest = span
    window = timedelta(days=settings.snapshot.window_days)
    first, last = as_of_utc(keys[0]), as_of_utc(keys[-1])
    if last < first_order:
        raise BackfillError(f"the range ends before the warehouse's first order ({first_order:%Y-%m-%d %H:%M} UTC)")
    if first > newest + window:
        raise BackfillError(f"the range starts after the warehouse's data ends (newest change "
                            f"{newest:%Y-%m-%d %H:%M} UTC): every order would be out of the {window.days}-day window")
    notes = []
    partial = [k for k in keys if as_of_utc(k) - window < first_order]
    if partial:
        notes.append(f"{len(partial)} ticks (up to {partial[-1]}) look back before the warehouse's first order "
                     f"({first_order:%Y-%m-%d %H:%M} UTC): their backlog holds only the orders the data has")
    stale = [k for k in keys if as_of_utc(k) > newest + timedelta(days=1)]
    if stale:
        notes.append(f"{len(stale)} ticks (from {stale[0]}) are over a day past the warehouse's newest change "
                     f"({newest:%Y-%m-%d %H:%M} UTC): is it still being loaded?")
    return notes


def _watch(instance, run_id: str, total: int, done: threading.Event, progress, task) -> None:
    """Advance the bar with the run's materializations (one per asset and tick), polling the event log."""
    import dagster as dg

    seen: set[tuple[str, str]] = set()
    cursor = None
    while True:
        finished = done.is_set()
        result = instance.get_records_for_run(run_id, cursor=cursor,
                                              of_type=dg.DagsterEventType.ASSET_MATERIALIZATION)
        cursor = result.cursor
        for record in result.records:
            event = record.event_log_entry.dagster_event
            if event is not None:
                key = event.asset_key.to_user_string() if event.asset_key else ""
                seen.add((key, event.partition or ""))
                progress.update(task, completed=min(len(seen), total), description=f"{key:<18}")
        if finished:
            return
        done.wait(0.5)


def _summary(result, keys: list[str]) -> pd.DataFrame:
    """Per tick: the snapshot mode, backlog, P1 orders, value at risk and the flow, from the run's events."""
    rows: dict[str, dict] = {k: {"tick": k} for k in keys}
    wanted = {"stuck_orders": ("snapshot_mode", "approximate_orders"),
              "scored_orders": ("backlog_count", "orders_p1", "value_at_risk_aed"),
              "backlog_flows": ("entered", "left", "self_healed")}
    for event in result.get_asset_materialization_events():
        asset = event.materialization.asset_key.to_user_string()
        if asset in wanted and event.partition in rows:
            meta = event.materialization.metadata
            rows[event.partition].update({k: meta[k].value for k in wanted[asset] if k in meta})
    columns = ["tick", *(name for names in wanted.values() for name in names)]
    return pd.DataFrame(list(rows.values())).reindex(columns=columns)


def _table(summary: pd.DataFrame):
    from rich.table import Table

    by_day = len(summary) > PER_TICK_ROWS
    if by_day:
        summary = (summary.assign(day=summary["tick"].str[:10])
                   .groupby("day", as_index=False)
                   .agg(tick=("day", "first"), snapshot_mode=("snapshot_mode", lambda m: "approximate" if
                        (m == "approximate").any() else "exact"),
                        approximate_orders=("approximate_orders", "max"), backlog_count=("backlog_count", "last"),
                        orders_p1=("orders_p1", "last"), value_at_risk_aed=("value_at_risk_aed", "last"),
                        entered=("entered", lambda s: s.sum(min_count=1)), left=("left", lambda s: s.sum(min_count=1)),
                        self_healed=("self_healed", lambda s: s.sum(min_count=1))))
    table = Table(title="Backlog per day (at the day's last tick)" if by_day else "Backlog per tick")
    for name in ["day" if by_day else "tick", "snapshot", "backlog", "P1", "value at risk (AED)",
                 "entered", "left", "self-healed"]:
        table.add_column(name, justify="left" if name in ("tick", "day", "snapshot") else "right")

    def number(value) -> str:
        return "—" if value is None or pd.isna(value) else f"{value:,.0f}"

    for row in summary.itertuples():
        mode = row.snapshot_mode if row.snapshot_mode == "exact" else f"approximate ({row.approximate_orders:.0f})"
        table.add_row(row.tick, mode, number(row.backlog_count), number(row.orders_p1),
                      number(row.value_at_risk_aed), number(row.entered), number(row.left), number(row.self_healed))
    return table


@contextmanager
def one_planned_event_per_asset() -> Iterator[None]:
    """For this run only, one "planned" event per asset for the whole range instead of one per
    asset and tick: on a SQLite instance each event is a write of tens of milliseconds, so 270
    ticks would spend over a minute announcing the run. Dagster's trade-off: if the run fails, its
    partitions show as missing rather than failed (the run is failed, and `ecm backfill` says why)."""
    name = "DAGSTER_EMIT_PARTITION_SUBSET_IN_PLANNED_EVENTS"
    previous = os.environ.get(name)
    os.environ[name] = "1"
    try:
        yield
    finally:
        if previous is None:
            os.environ.pop(name, None)
        else:
            os.environ[name] = previous


def cmd_backfill(args: argparse.Namespace) -> int:
    from rich.console import Console
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
    )

    keys = keys_between(args.from_key, args.to_key)
    notes = _checked_warehouse_span(keys)
    err = Console(stderr=True)
    for note in notes:
        err.print(f"note: {note}", highlight=False)
    started = time.monotonic()
    with open_instance() as instance:
        for run_id in fail_dead_runs(instance):
            stderr(f"note: marked run {run_id[:8]} failed: the ecm process that ran it is gone")
        from ecm_pipeline.definitions import defs
        from ecm_pipeline.jobs import BACKFILL_SELECTION, TRIAGE_JOB

        asset_graph = defs.resolve_asset_graph()
        selected = sorted(BACKFILL_SELECTION.resolve(asset_graph))
        job = defs.resolve_job_def(TRIAGE_JOB)
        span = keys[0] if len(keys) == 1 else f"{keys[0]}...{keys[-1]}"
        tags = run_tags(span, "cli-backfill")
        if len(keys) > 1:
            tags |= {RANGE_START: keys[0], RANGE_END: keys[-1]}
        run_id = str(uuid.uuid4())
        total = len(selected) * len(keys)
        done = threading.Event()
        with Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                      TextColumn("asset-ticks"), TimeElapsedColumn(), TextColumn("ETA"), TimeRemainingColumn(),
                      console=err, transient=False) as progress:
            task = progress.add_task("starting", total=total)
            watcher = threading.Thread(target=_watch, args=(instance, run_id, total, done, progress, task),
                                       daemon=True)
            watcher.start()
            try:
                with one_planned_event_per_asset():
                    result = job.execute_in_process(
                        partition_key=keys[0] if len(keys) == 1 else None, asset_selection=selected,
                        instance=instance, raise_on_error=False, run_id=run_id, tags=tags,
                        run_config={"loggers": {"console": {"config": {
                            "log_level": "DEBUG" if args.verbose else "CRITICAL"}}}},
                    )
            finally:
                done.set()
                watcher.join()
        warnings = list(dict.fromkeys(warnings_of(instance, result.run_id)))
        for warning in warnings[:MAX_WARNINGS]:
            stderr(f"warning: {warning}")
        if len(warnings) > MAX_WARNINGS:
            stderr(f"... and {len(warnings) - MAX_WARNINGS} more warnings (the run's log in `make dev` has them all)")
    if not result.success:
        stderr(f"Backfill {span} FAILED — {failure_message(result)}")
        stderr(f"(run {result.run_id}; details in `make dev` -> Runs, or again with --verbose)")
        return 1
    elapsed = time.monotonic() - started
    # Wide enough for the table when piped (rich would fold it to 80 columns).
    Console(width=None if sys.stdout.isatty() else 120).print(_table(_summary(result, keys)))
    materialized = {e.materialization.asset_key.to_user_string(): e.materialization.metadata
                    for e in result.get_asset_materialization_events()}
    chart = materialized.get("backlog_history", {}).get("chart_file")
    print(f"{len(keys)} ticks backfilled in one run ({result.run_id[:8]}) in {elapsed:.1f} s; "
          f"nothing written to the Sheet or Slack.")
    if chart is not None:
        print(f"Chart: {chart.value}")
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    backfill = sub.add_parser("backfill", help="rebuild a range of past ticks and the backlog history in one run")
    backfill.add_argument("--from", dest="from_key", required=True, help="first tick, e.g. 2026-11-01-07:00")
    backfill.add_argument("--to", dest="to_key", required=True, help="last tick, e.g. 2026-11-21-20:00")
    backfill.set_defaults(func=cmd_backfill)

