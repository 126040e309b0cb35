"""Closed tickets that left the Assignments tab for the archive are still tickets: what needs every
ticket ever assigned (when an order first got one, say) reads the tab and the lake's archive."""

from __future__ import annotations

import pandas as pd

from ecm_pipeline.domain.tickets import ASSIGNMENT_COLUMNS
from ecm_pipeline.resources.lake import LakeResource

ARCHIVE_ASSET = "archived_tickets"


def archived(lake: LakeResource) -> pd.DataFrame | None:
    """Every ticket the archive holds (one lake file per tick that archived some), or None."""
    frames = [f.frame for f in lake.read_many(ARCHIVE_ASSET, lake.partitions(ARCHIVE_ASSET)).values()]
    return pd.concat(frames, ignore_index=True) if frames else None


def every_ticket(lake: LakeResource, tab: pd.DataFrame) -> pd.DataFrame:
    """The Assignments tab as read, with the archived tickets below it."""
    old = archived(lake)
    return tab if old is None or old.empty else pd.concat([tab, old[list(ASSIGNMENT_COLUMNS)]], ignore_index=True)
