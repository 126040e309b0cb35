"""The assets of the code location, by group: the triage (snapshot to briefing)."""

from ecm_pipeline.assets.triage import GROUP, triage_assets

__all__ = ["GROUP", "triage_assets"]
