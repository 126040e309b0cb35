"""The triage job and the schedule that runs it at every tick."""

import dagster as dg

from ecm_pipeline.assets import GROUP, HISTORY_GROUP, LIVE_TICK_TAG, REPORTS_GROUP
from ecm_pipeline.partitions import triage_partitions
from ecm_pipeline.run_context import TRIGGER_TAG

TRIAGE_JOB = "ecm_triage"

triage_job = dg.define_asset_job(
    TRIAGE_JOB,
    selection=dg.AssetSelection.groups(GROUP, HISTORY_GROUP, REPORTS_GROUP),
    # Deprecated (inferred from the assets) but still needed in 1.13: without it the schedule built
    # from this job stays unresolved until the repository resolves it.
    partitions_def=triage_partitions,
    description="Snapshot, qualify, score, assign and brief one tick, and add it to the backlog history; the "
                "daily tick also reports the backlog (before the briefing) and the patterns (after it).",
    tags={"ecm/job": "triage"},
)

# The partitions definition carries the cron and the timezone; with end_offset=1 the partition a
# tick requests is the window that starts at that tick, so the 14:00 run triages ...-14:00.
triage_schedule = dg.build_schedule_from_partitioned_job(
    triage_job,
    name="triage_schedule",
    default_status=dg.DefaultScheduleStatus.RUNNING,
    tags={TRIGGER_TAG: "schedule"},   # the tick is the run's dagster/partition tag
    description="Triage at every tick; the 14:00 run materializes partition ...-14:00 as of 14:00.",
)

# What a backfill rebuilds (SPEC §10): the snapshot to the scored backlog, the history and the
# daily reports (kept in the lake, never posted). The
# steps that act for the live tick only (the assignment, the briefing, ticket progress) say so in
# their tags, and a backfill leaves them out.
BACKFILL_SELECTION = (dg.AssetSelection.groups(GROUP, HISTORY_GROUP, REPORTS_GROUP)
                      - dg.AssetSelection.tag(*LIVE_TICK_TAG))
