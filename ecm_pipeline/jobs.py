"""The triage job and the schedule that runs it at every tick."""


from datetime import datetime

import dagster as dg

from ecm_pipeline.assets import GROUP
from ecm_pipeline.partitions import TIMEZONE, current_partition_key, triage_partitions
from ecm_pipeline.settings import load_settings

triage_job = dg.define_asset_job(
    "ecm_triage",
    selection=dg.AssetSelection.groups(GROUP),
    partitions_def=triage_partitions,
    executor_def=dg.in_process_executor,
    description="Snapshot, qualify, score, assign and brief one tick.",
)


@dg.schedule(
    job=triage_job,
    cron_schedule=load_settings().schedule.cron,
    execution_timezone=str(TIMEZONE),
    default_status=dg.DefaultScheduleStatus.RUNNING,
    description="Triage at every tick; the 14:00 run materializes partition ...-14:00 as of 14:00.",
)
def triage_schedule(context: dg.ScheduleEvaluationContext) -> dg.RunRequest:
    tick: datetime = context.scheduled_execution_time
    key = current_partition_key(tick)
    return dg.RunRequest(run_key=key, partition_key=key)
