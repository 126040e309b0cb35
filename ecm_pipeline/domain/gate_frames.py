"""The frames the quality gates validate (pure). Each gate's suite names which frame each
expectation reads: the rows themselves, or a one-row profile of table-level figures."""

from __future__ import annotations

import numpy as np
import pandas as pd

from ecm_pipeline.domain.assignment import STICKY_STATES, agent_loads
from ecm_pipeline.domain.qualification import DISQUALIFICATIONS, disqualification_masks
from ecm_pipeline.settings import QualificationSettings

DEAD_ORDER_CODES = ("D1", "D2", "D3", "D4", "D5")


def backlog_profile(qualified: pd.DataFrame) -> pd.DataFrame:
    n = len(qualified)
    share = qualified["currency"].value_counts(normalize=True) if n else pd.Series(dtype=float)
    aed = float(share.get("AED", 0.0))
    return pd.DataFrame([{
        "backlog_size": n,
        "aed_share": round(aed, 4),
        "gbp_share": round(float(share.get("GBP", 0.0)), 4),
        "eur_share": round(float(share.get("EUR", 0.0)), 4),
        "gbp_eur_share": round(float(share.get("GBP", 0.0) + share.get("EUR", 0.0)), 4),
        "all_aed_with_over_50_orders": bool(n > 50 and aed == 1.0),
    }])


def backlog_frames(qualified: pd.DataFrame, settings: QualificationSettings) -> dict[str, pd.DataFrame]:
    """The qualified rows with `dead_order_rule` (the first D1-D5 rule that still matches), and the
    backlog profile."""
    orders = qualified.copy()
    rules = [(d.label, mask) for d, mask in zip(DISQUALIFICATIONS, disqualification_masks(orders, settings),
                                                strict=True) if d.label in DEAD_ORDER_CODES]
    orders["dead_order_rule"] = pd.Series(
        np.select([m for _, m in rules], [label for label, _ in rules], default=""), index=orders.index
    ).replace("", None)
    return {"orders": orders, "profile": backlog_profile(qualified)}


def assignment_frames(outcome: pd.DataFrame, tab_after: pd.DataFrame, pool: pd.DataFrame,
                      roster: pd.DataFrame) -> dict[str, pd.DataFrame]:
    """Frames for the post-write invariants: the open rows of the Sheet, the agents given tickets this
    tick (with their load after the write), this tick's assignments, and a profile."""
    status = tab_after["Status"].astype(str).str.strip().str.upper()
    open_rows = tab_after.loc[status.isin(STICKY_STATES), ["Order ID", "Assigned Agent", "Status"]].copy()
    open_rows["Order ID"] = open_rows["Order ID"].astype(str).str.strip()

    loads = agent_loads(tab_after)
    given = pool[pool["assigned_now"] > 0].copy()
    given["load_after"] = given["key"].map(loads).fillna(0).astype(int)
    given["above_max_tickets"] = given["load_after"] > given["max_tickets"]
    agents = given[["email", "load_after", "max_tickets", "above_max_tickets"]]

    this_tick = outcome[outcome["assignment"].isin(["assigned", "assigned_earlier"])].copy()
    usable = set(roster.loc[roster["active"] & ~roster["excluded"], "key"])
    this_tick["assignee_active"] = this_tick["agent_key"].isin(usable)
    assigned = this_tick[["order_id", "agent_email", "currency", "assignee_active"]]

    had_room = pool.loc[pool["room_after_high_value"] > 0, "high_value_now"]
    assignable = outcome[~outcome["assignment"].isin(["already_assigned", "monitor_only"])]
    backlog_has_non_aed = bool((assignable["currency"] != "AED").any())
    profile = pd.DataFrame([{
        "high_value_spread": int(had_room.max() - had_room.min()) if len(had_room) else 0,
        "non_aed_represented": bool(not backlog_has_non_aed or not len(this_tick)
                                    or (this_tick["currency"] != "AED").any()),
    }])
    return {"open_rows": open_rows, "agents": agents, "assigned": assigned, "profile": profile}
