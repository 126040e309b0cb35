"""The assets of the code location, by group: the triage (snapshot to briefing) and the history
built from it."""

from ecm_pipeline.assets.history import GROUP as HISTORY_GROUP
from ecm_pipeline.assets.history import history_assets
from ecm_pipeline.assets.triage import GROUP, LIVE_TICK_TAG, triage_assets

__all__ = ["GROUP", "HISTORY_GROUP", "LIVE_TICK_TAG", "history_assets", "triage_assets"]
