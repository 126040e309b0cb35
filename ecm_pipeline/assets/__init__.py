"""The assets of the code location, by group: the triage (snapshot to briefing), the history built
from it, and the manager's daily reports."""

from ecm_pipeline.assets.archive import archive_assets
from ecm_pipeline.assets.history import GROUP as HISTORY_GROUP
from ecm_pipeline.assets.history import history_assets
from ecm_pipeline.assets.reports import GROUP as REPORTS_GROUP
from ecm_pipeline.assets.reports import report_assets
from ecm_pipeline.assets.triage import GROUP, LIVE_TICK_TAG
from ecm_pipeline.assets.triage import triage_assets as _triage_steps

# The triage group: the steps of a tick, and the Sheet's upkeep after its assignment.
triage_assets = [*_triage_steps, *archive_assets]

__all__ = ["GROUP", "HISTORY_GROUP", "LIVE_TICK_TAG", "REPORTS_GROUP", "history_assets", "report_assets",
           "triage_assets"]
