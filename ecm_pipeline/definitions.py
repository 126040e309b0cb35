"""The code location: assets, quality gates, the triage job, its schedule, the failure alert and this
environment's resources."""

from __future__ import annotations

import warnings

import dagster as dg

from ecm_pipeline.alerts import failure_alert_sensor
from ecm_pipeline.assets import history_assets, report_assets, triage_assets
from ecm_pipeline.checks import quality_gates
from ecm_pipeline.health import missed_tick_sensor
from ecm_pipeline.jobs import triage_job, triage_schedule
from ecm_pipeline.resources import environment_resources

with warnings.catch_warnings():   # beta in 1.13: a notice for us, not for every `ecm` user's stderr
    warnings.simplefilter("ignore", dg.BetaWarning)
    # Each asset links to the file and line that defines it (the UI's "Code" references).
    assets = dg.with_source_code_references([*triage_assets, *history_assets, *report_assets])

defs = dg.Definitions(
    assets=assets,
    asset_checks=quality_gates,
    jobs=[triage_job],
    schedules=[triage_schedule],
    sensors=[failure_alert_sensor, missed_tick_sensor],
    resources=environment_resources(),
    executor=dg.in_process_executor,
)
