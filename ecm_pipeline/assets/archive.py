"""The Sheet as months pass: the tickets of the tabs this project owns copied into the lake at every
live tick (`ticket_history`), and closed tickets past the retention moved out of the Assignments
tab into a yearly archive tab (on Google, in a spreadsheet per year) and the lake
(`archived_tickets`), so the tab people work by hand — and every run's read of it — stays the
size of the open work.

The move is copy, verify, then delete, under the Assignments tab's lock: a crash in between leaves
a ticket in both places at most (never in neither), and the next run finishes the move without a
second copy (the archive tab and the lake are both keyed by ticket)."""


from datetime import UTC, datetime

import dagster as dg
import pandas as pd

from ecm_pipeline.archive import ARCHIVE_ASSET
from ecm_pipeline.assets.triage import LIVE_TICK_ONLY, PARTITIONED, _skip_all, _spec
from ecm_pipeline.domain.tickets import (
    ASSIGNMENT_COLUMNS,
    TICKET_KEY,
    archivable,
    archive_tab,
    keyed,
)
from ecm_pipeline.metadata import partition_metadata
from ecm_pipeline.resources.lake import LakeResource
from ecm_pipeline.resources.sheet import ROW, AssignmentStoreResource
from ecm_pipeline.run_context import partition_keys, side_effects_blocked
from ecm_pipeline.settings import load_settings

HISTORY_TABS = ("Assignments", "Resolutions", "Escalations")


def archived_keys(lake: LakeResource, except_key: str) -> set[str]:
    """The tickets the lake's archive already holds, from every tick but `except_key`."""
    keys = [k for k in lake.partitions(ARCHIVE_ASSET) if k != except_key]
    frames = [f.frame for f in lake.read_many(ARCHIVE_ASSET, keys, list(TICKET_KEY)).values()]
    return set(keyed(pd.concat(frames), TICKET_KEY)) if frames else set()


# After the assignment and the progress report, which read the tab it trims.
@dg.multi_asset(
    name="ticket_archive",
    specs=[
        _spec("archived_tickets", "Closed tickets moved out of the Assignments tab at the tick: RESOLVED, and "
              "their last change (resolution, else Assigned At) older than retention.closed_days. Each is also "
              "in the archive tab of its year (on Google Sheets, in that year's own spreadsheet); each ticket "
              "is in the lake once.",
              kinds={"googlesheets", "pandas", "parquet"}, deps=["ticket_progress"],
              tags={"ecm/writes": "sheet", **LIVE_TICK_ONLY}),
        _spec("ticket_history", "Every ticket of the tabs this project owns (Assignments, Resolutions, "
              "Escalations) as they stood at the tick, one row per Sheet row with its tab: what history, reports "
              "and statistics query with DuckDB instead of reading the Sheet. Live tick only.",
              kinds={"googlesheets", "pandas", "parquet"}, deps=["ticket_progress"], tags=LIVE_TICK_ONLY),
    ],
    pool="ecm_assignment_store",
    can_subset=True,
    **PARTITIONED,
)
def ticket_archive(context: dg.AssetExecutionContext, lake: LakeResource, sheet: AssignmentStoreResource):
    """Archives old closed tickets (copy, verify, delete) and copies the tabs into the lake."""
    keys = partition_keys(context)
    selected = {k.to_user_string() for k in context.selected_asset_keys}
    blocked = side_effects_blocked(context, keys)
    if blocked:
        yield from _skip_all(context, sorted(selected), blocked)
        return
    if "archived_tickets" not in selected:   # the lake copy alone: nothing is moved
        yield _history(context, lake, sheet.store(), keys[0])
        return
    settings = load_settings()
    key = keys[0]
    run_id = context.run.run_id
    store = sheet.store()
    now = datetime.now(UTC).replace(tzinfo=None)
    with store.lock("Assignments", owner=f"run {run_id[:8]} ({key}, archive)",
                    timeout_seconds=settings.sheet.lock_timeout_seconds):
        tabs = store.read_tabs(list(HISTORY_TABS))
        old = archivable(tabs["Assignments"], tabs["Resolutions"], pd.Timestamp(now), settings.retention.closed_days)
        years = old["last_change"].dt.year
        # 1. the lake: this tick's file keeps what an interrupted earlier run of it wrote, plus the rest
        exists = lake.path(ARCHIVE_ASSET, key).exists()
        if old.empty and exists:   # nothing to move: leave this tick's file as it is, unread
            mine, version = None, lake.read(ARCHIVE_ASSET, key, columns=[]).version
        else:
            before = lake.find(ARCHIVE_ASSET, key)
            held = old.drop(columns=[ROW]) if before is None else pd.concat([before.frame, old.drop(columns=[ROW])])
            mine = held[~keyed(held, TICKET_KEY).isin(archived_keys(lake, key)).to_numpy()]
            mine = mine.loc[~keyed(mine, TICKET_KEY).duplicated().to_numpy()].reset_index(drop=True)
            version = lake.write(ARCHIVE_ASSET, {key: mine}, run_id=run_id)[key]
        # 2. the year's archive tab (its own spreadsheet on Google), once per ticket; 3. verify;
        # 4. delete what is safely in both
        appended, present, names = 0, set(), []
        for year in sorted({int(y) for y in years}):
            archive, name = store.archive_store(year), archive_tab(year)
            appended += archive.append_once(name, old.loc[(years == year).to_numpy(), list(ASSIGNMENT_COLUMNS)],
                                            archive.read_tab(name))
            present |= set(keyed(archive.read_tab(name), TICKET_KEY))
            names.append(f"{name} ({archive.describe()})")
        verified = old[keyed(old, TICKET_KEY).isin(present).to_numpy()]
        removed = store.delete_rows("Assignments", verified, list(ASSIGNMENT_COLUMNS)) if len(verified) else 0
        if len(verified) < len(old):
            context.log.warning(f"{len(old) - len(verified)} tickets were not found in their archive tab after the "
                                "copy; they stay in Assignments and the next tick tries again")
    left = len(tabs["Assignments"]) - removed
    context.log.info(f"archived {removed} closed tickets older than {settings.retention.closed_days:g} days; "
                     f"{left} rows remain in Assignments")
    yield dg.MaterializeResult(asset_key="archived_tickets", metadata={
        **(partition_metadata(mine, lake.uri(ARCHIVE_ASSET, key)) if mine is not None else {}),
        "archived_now": removed, "appended_to_archive_tabs": appended, "archive_tabs": ", ".join(names),
        "assignments_rows_left": left, "lake_version": version,
    })
    if "ticket_history" in selected:
        yield _history(context, lake, store, key)


def _history(context: dg.AssetExecutionContext, lake: LakeResource, store, key: str) -> dg.MaterializeResult:
    """Every row of the owned tabs, as they stand now, into the tick's `ticket_history` file."""
    history = store.read_tabs(list(HISTORY_TABS))
    rows = pd.concat([frame.drop(columns=[ROW]).assign(tab=tab) for tab, frame in history.items()], ignore_index=True)
    versions = lake.write("ticket_history", {key: rows}, run_id=context.run.run_id)
    return dg.MaterializeResult(asset_key="ticket_history", metadata={
        **partition_metadata(rows, lake.uri("ticket_history", key)),
        **{f"rows_{tab.lower()}": len(frame) for tab, frame in history.items()},
        "lake_version": versions[key],
    })


archive_assets = [ticket_archive]
