"""Closed tickets that left the Assignments tab for the archive are still tickets: what needs every
ticket ever assigned (when an order first got one, say) reads the tab and the lake's archive."""

from __future__ import annotations

from collections.abc import Iterable

import pandas as pd

from ecm_pipeline.domain.tickets import ASSIGNMENT_COLUMNS, order_ids
from ecm_pipeline.resources.lake import LakeResource

ARCHIVE_ASSET = "archived_tickets"
RESOLUTIONS_ARCHIVE_ASSET = "archived_resolutions"


def archived(lake: LakeResource, columns: list[str] | None = None) -> pd.DataFrame | None:
    """Every ticket the archive holds (one lake file per tick that archived some), or None; only
    `columns` when given (the archive grows by a year of tickets a year)."""
    frames = [f.frame for f in lake.read_many(ARCHIVE_ASSET, lake.partitions(ARCHIVE_ASSET), columns).values()]
    return pd.concat(frames, ignore_index=True) if frames else None


def every_ticket(lake: LakeResource, tab: pd.DataFrame, columns: tuple[str, ...] = ASSIGNMENT_COLUMNS,
                 orders: Iterable[str] | None = None) -> pd.DataFrame:
    """`columns` of the Assignments tab as read, with the archived tickets below it: only those of
    `orders` from the archive when given (a year of archived tickets is ten times a day's backlog)."""
    old = archived(lake, list(columns))
    if old is not None and orders is not None:
        old = old[order_ids(old).isin(orders).to_numpy()]
    mine = tab[list(columns)]
    return mine if old is None or old.empty else pd.concat([mine, old], ignore_index=True)
