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

from ecm_pipeline.archive import ARCHIVE_ASSET, RESOLUTIONS_ARCHIVE_ASSET
from ecm_pipeline.assets.triage import LIVE_TICK_ONLY, PARTITIONED, _skip_all, _spec
from ecm_pipeline.domain.tickets import (
    TICKET_KEY,
    archivable,
    archivable_resolutions,
    archive_tab,
    keyed,
)
from ecm_pipeline.metadata import partition_metadata
from ecm_pipeline.resources.lake import LakeResource
from ecm_pipeline.resources.sheet import ROW, AssignmentStore, AssignmentStoreResource, columns_of
from ecm_pipeline.run_context import partition_keys, side_effects_blocked
from ecm_pipeline.settings import load_settings

HISTORY_TABS = ("Assignments", "Resolutions", "Escalations")


def archived_keys(lake: LakeResource, asset: str, except_key: str) -> set[str]:
    """The tickets an archive asset of the lake already holds, from every tick but `except_key`."""
    keys = [k for k in lake.partitions(asset) if k != except_key]
    frames = [f.frame for f in lake.read_many(asset, keys, list(TICKET_KEY)).values()]
    return set(keyed(pd.concat(frames), TICKET_KEY)) if frames else set()


def move(context: dg.AssetExecutionContext, lake: LakeResource, store: AssignmentStore, asset: str, tab: str,
         old: pd.DataFrame, key: str) -> tuple[dict, int]:
    """Move `old` (rows of `tab` with `_row` and `last_change`) to the lake's `asset` and to the
    archive tab of each row's year: copy, verify, then delete what is safely in both. Keyed by
    ticket everywhere, so an interrupted move finishes next time without a second copy. Returns
    the asset's metadata and how many rows left `tab`."""
    run_id = context.run.run_id
    columns = list(columns_of(tab))
    # 1. the lake: this tick's file keeps what an interrupted earlier run of it wrote, plus the rest
    exists = lake.path(asset, key).exists()
    if old.empty and exists:   # nothing to move: leave this tick's file as it is, unread
        mine, version = None, lake.read(asset, key, columns=[]).version
    else:
        before = lake.find(asset, key)
        held = old.drop(columns=[ROW]) if before is None else pd.concat([before.frame, old.drop(columns=[ROW])])
        mine = held[~keyed(held, TICKET_KEY).isin(archived_keys(lake, asset, key)).to_numpy()]
        mine = mine.loc[~keyed(mine, TICKET_KEY).duplicated().to_numpy()].reset_index(drop=True)
        version = lake.write(asset, {key: mine}, run_id=run_id)[key]
    # 2. the year's archive tab (its own spreadsheet on Google), once per ticket; 3. verify
    years = old["last_change"].dt.year
    appended, present, names = 0, set(), []
    for year in sorted({int(y) for y in years}):
        archive, name = store.archive_store(year), archive_tab(year, tab)
        appended += archive.append_once(name, old.loc[(years == year).to_numpy(), columns], archive.read_tab(name))
        present |= set(keyed(archive.read_tab(name), TICKET_KEY))
        names.append(f"{name} ({archive.describe()})")
    # 4. delete from the tab what is safely in both
    verified = old[keyed(old, TICKET_KEY).isin(present).to_numpy()]
    removed = store.delete_rows(tab, verified, columns) if len(verified) else 0
    if len(verified) < len(old):
        context.log.warning(f"{tab}: {len(old) - len(verified)} rows were not found in their archive tab after the "
                            "copy; they stay and the next tick tries again")
    return {
        **(partition_metadata(mine, lake.uri(asset, key)) if mine is not None else {}),
        "archived_now": removed, "appended_to_archive_tabs": appended, "archive_tabs": ", ".join(names),
        "lake_version": version,
    }, removed


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
        _spec("archived_resolutions", "Resolutions rows that followed their ticket out of the Sheet: the ticket "
              "has left the Assignments tab and the resolution is older than retention.closed_days. Each is also "
              "in the Resolutions archive tab of its year; each in the lake once.",
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
    """Archives old closed tickets and their resolutions (copy, verify, delete) and copies the tabs
    into the lake."""
    keys = partition_keys(context)
    selected = {k.to_user_string() for k in context.selected_asset_keys}
    blocked = side_effects_blocked(context, keys)
    if blocked:
        yield from _skip_all(context, sorted(selected), blocked)
        return
    key, store = keys[0], sheet.store()
    if selected & {ARCHIVE_ASSET, RESOLUTIONS_ARCHIVE_ASSET}:
        settings = load_settings()
        now = pd.Timestamp(datetime.now(UTC).replace(tzinfo=None))
        days = settings.retention.closed_days
        with store.lock("Assignments", owner=f"run {context.run.run_id[:8]} ({key}, archive)",
                        timeout_seconds=settings.sheet.lock_timeout_seconds):
            tabs = store.read_tabs(list(HISTORY_TABS))
            tab = tabs["Assignments"]
            if ARCHIVE_ASSET in selected:
                metadata, removed = move(context, lake, store, ARCHIVE_ASSET, "Assignments",
                                         archivable(tab, tabs["Resolutions"], now, days), key)
                tab = store.read_tab("Assignments") if removed else tab
                yield dg.MaterializeResult(asset_key=ARCHIVE_ASSET,
                                           metadata={**metadata, "assignments_rows_left": len(tab)})
            if RESOLUTIONS_ARCHIVE_ASSET in selected:
                metadata, removed = move(context, lake, store, RESOLUTIONS_ARCHIVE_ASSET, "Resolutions",
                                         archivable_resolutions(tabs["Resolutions"], tab, now, days), key)
                yield dg.MaterializeResult(asset_key=RESOLUTIONS_ARCHIVE_ASSET, metadata={
                    **metadata, "resolutions_rows_left": len(tabs["Resolutions"]) - removed})
        context.log.info(f"archived closed tickets older than {days:g} days; {len(tab)} rows remain in Assignments")
    if "ticket_history" in selected:
        yield _history(context, lake, store, key)


def _history(context: dg.AssetExecutionContext, lake: LakeResource, store: AssignmentStore,
             key: str) -> dg.MaterializeResult:
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
