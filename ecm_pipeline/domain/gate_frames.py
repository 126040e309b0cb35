"""The frames the quality gates validate (pure). Each gate's suite names which frame each
expectation reads: the rows themselves, or a profile with one row of table-level figures per
partition. Every frame carries `partition_key`, so one validation covers a whole backfill range and
still names the partitions that failed."""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import pandas as pd

from ecm_pipeline.domain.qualification import DISQUALIFICATIONS, disqualification_masks
from ecm_pipeline.domain.tickets import agent_loads, open_tickets, order_ids, pipeline_copies
from ecm_pipeline.settings import GateSettings, QualificationSettings

PARTITION = "partition_key"
DEAD_ORDER_CODES = ("D1", "D2", "D3", "D4", "D5")


def stacked(frames: Mapping[str, pd.DataFrame], columns: list[str] | None = None,
            **per_partition: Mapping[str, object]) -> pd.DataFrame:
    """One frame of many partitions' rows, each with its `partition_key` (and any other per-partition
    value given, e.g. `as_of`); only `columns` when given. Partitions with no rows add nothing, but
    keep the columns."""
    if not frames:
        return pd.DataFrame({**{c: pd.Series(dtype=object) for c in columns or []}, PARTITION: pd.Series(dtype=str)})
    # One concatenation (column by column when only a few are wanted: selecting a column list from
    # each of hundreds of frames copies them all), then each per-partition value repeated over its
    # rows: a copy of every frame per partition (`assign`) costs more than the concatenation.
    keys = [k for k, f in frames.items() if len(f)] or list(frames)[:1]
    if columns is None:
        out = pd.concat([frames[k] for k in keys], ignore_index=True)
    else:
        out = pd.DataFrame({c: pd.concat([frames[k][c] for k in keys], ignore_index=True) for c in columns})
    lengths = [len(frames[k]) for k in keys]
    for name, values in {PARTITION: dict(zip(keys, keys, strict=True)), **per_partition}.items():
        out[name] = pd.Series([values[k] for k in keys]).repeat(lengths).reset_index(drop=True)
    return out


def unstacked(frame: pd.DataFrame, keys: list[str], drop: tuple[str, ...] = (),
              keep_partition: bool = False) -> dict[str, pd.DataFrame]:
    """The inverse of `stacked`: each partition's rows (without `partition_key`, unless kept, and
    `drop`), with one group-by for the lot; a key with no rows gets an empty frame with the columns."""
    rest = frame.drop(columns=[*([] if keep_partition else [PARTITION]), *drop])
    positions = frame.groupby(PARTITION, sort=False).indices
    # A partition whose rows are contiguous (as `stacked` and a sort by partition leave them) is a
    # slice, which Arrow-backed columns share without copying; otherwise its rows are taken.
    groups = {k: rest.iloc[idx[0]:idx[-1] + 1] if idx[-1] - idx[0] + 1 == len(idx) else rest.iloc[idx]
              for k, idx in positions.items()}
    return {k: (groups[k] if k in groups else rest.iloc[0:0]).reset_index(drop=True) for k in keys}


def backlog_profile(qualified: Mapping[str, pd.DataFrame], gates: GateSettings) -> pd.DataFrame:
    """One row per partition: backlog size and currency shares (zero for an empty backlog)."""
    rows = []
    for key, frame in qualified.items():
        n = len(frame)
        share = frame["currency"].value_counts(normalize=True) if n else pd.Series(dtype=float)
        aed = float(share.get("AED", 0.0))
        rows.append({
            PARTITION: key,
            "backlog_size": n,
            "aed_share": round(aed, 4),
            "gbp_share": round(float(share.get("GBP", 0.0)), 4),
            "eur_share": round(float(share.get("EUR", 0.0)), 4),
            "gbp_eur_share": round(float(share.get("GBP", 0.0) + share.get("EUR", 0.0)), 4),
            "all_aed_over_the_limit": bool(n > gates.all_aed_min_orders and aed == 1.0),
        })
    return pd.DataFrame(rows, columns=[PARTITION, "backlog_size", "aed_share", "gbp_share", "eur_share",
                                       "gbp_eur_share", "all_aed_over_the_limit"])


def backlog_frames(qualified: Mapping[str, pd.DataFrame], settings: QualificationSettings,
                   gates: GateSettings) -> dict[str, pd.DataFrame]:
    """The qualified rows of every partition with `dead_order_rule` (the first D1-D5 rule that still
    matches), and the backlog profile per partition."""
    orders = stacked(qualified)
    rules = [(d.label, mask) for d, mask in zip(DISQUALIFICATIONS, disqualification_masks(orders, settings),
                                                strict=True) if d.label in DEAD_ORDER_CODES]
    orders["dead_order_rule"] = pd.Series(
        np.select([m for _, m in rules], [label for label, _ in rules], default=""), index=orders.index
    ).replace("", None)
    return {"orders": orders, "profile": backlog_profile(qualified, gates)}


def gate_parameters(gates: GateSettings) -> dict[str, object]:
    """The thresholds of `gates` as the flat parameters the suites name."""
    out: dict[str, object] = {}
    for name, value in gates.model_dump().items():
        if isinstance(value, tuple | list):
            out[f"{name}_min"], out[f"{name}_max"] = value
        else:
            out[name] = value
    return out


def assignment_frames(key: str, outcome: pd.DataFrame, tab_after: pd.DataFrame, pool: pd.DataFrame,
                      roster: pd.DataFrame) -> dict[str, pd.DataFrame]:
    """Frames for the post-write invariants of one tick: the open rows of the Sheet (which orders are
    open twice, and whether this tick made them so), the agents given tickets this tick with their
    load after the write, this tick's assignments, and a profile."""
    # A later copy of a ticket (same order, same run: a write that landed after the client gave up)
    # is neither a second assignment nor extra load; the next run removes it.
    tab = tab_after.drop(pipeline_copies(tab_after).index)
    open_rows = open_tickets(tab)
    ids = order_ids(open_rows)
    twice = ids.duplicated(keep=False)
    by_this_tick = open_rows["Triage Run"].astype(str).str.strip().eq(key)
    touched_now = set(ids[by_this_tick])
    open_frame = pd.DataFrame({
        PARTITION: key,
        "Order ID": ids.to_numpy(),
        "Triage Run": open_rows["Triage Run"].astype(str).to_numpy(),
        "open_twice": twice.to_numpy(),
        "assigned_twice_by_this_tick": (twice & ids.isin(touched_now)).to_numpy(),
    })

    loads = agent_loads(tab)
    given = pool[pool["assigned_now"] > 0].copy()
    given["load_after"] = given["key"].map(loads).fillna(0).astype(int)
    agents = pd.DataFrame({PARTITION: key, "email": given["email"].to_numpy(),
                           "load_after": given["load_after"].to_numpy(),
                           "max_tickets": given["max_tickets"].to_numpy(),
                           "above_max_tickets": (given["load_after"] > given["max_tickets"]).to_numpy()})

    this_tick = outcome[outcome["assignment"] == "assigned"]
    usable = set(roster.loc[roster["active"] & ~roster["excluded"], "key"])
    assigned = pd.DataFrame({PARTITION: key, "order_id": this_tick["order_id"].to_numpy(),
                             "agent_email": this_tick["agent_email"].to_numpy(),
                             "currency": this_tick["currency"].to_numpy(),
                             "assignee_active": this_tick["agent_key"].isin(usable).to_numpy()})

    had_room = pool.loc[pool["room_after_high_value"] > 0, "high_value_now"] if len(pool) else pd.Series(dtype=int)
    assignable = outcome[~outcome["assignment"].isin(["already_assigned", "monitor_only"])]
    backlog_has_non_aed = bool((assignable["currency"] != "AED").any())
    profile = pd.DataFrame([{
        PARTITION: key,
        "high_value_spread": int(had_room.max() - had_room.min()) if len(had_room) else 0,
        "non_aed_represented": bool(not backlog_has_non_aed or not len(this_tick)
                                    or (this_tick["currency"] != "AED").any()),
    }])
    return {"open_rows": open_frame, "agents": agents, "assigned": assigned, "profile": profile}
