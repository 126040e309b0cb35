"""The code location: assets, the triage job, its schedule and the resources for this environment."""

from __future__ import annotations

import dagster as dg

from ecm_pipeline.assets import triage_assets
from ecm_pipeline.jobs import triage_job, triage_schedule
from ecm_pipeline.resources import environment_resources

defs = dg.Definitions(
    assets=triage_assets,
    jobs=[triage_job],
    schedules=[triage_schedule],
    resources=environment_resources(),
    executor=dg.in_process_executor,
)
