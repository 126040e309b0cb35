"""The daily patterns report (SPEC §9, facts §8): which failures are systemic. Orders of the scored
backlog are clustered by their full signature across the source systems; each cluster gets an
impact score, flags, the stuck reason most of its orders were classified into, and a trend against
the previous report; uncategorized clusters large enough are novel. Separately, each stuck
reason's count is tested against its own trailing baseline (the same tick over the last days) with
a robust z-score. Pure: frames in, frames and messages out."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

import numpy as np
import pandas as pd

from ecm_pipeline.domain.briefing import Message, escape, sections
from ecm_pipeline.domain.classification import UNCATEGORIZED
from ecm_pipeline.settings import ReportSettings

SIGNATURE = ("currency", "status", "sub_state", "lulu_status", "has_falcon", "falcon_status", "payout_status",
             "payout_partner", "rfi_status")
CLUSTER_COLUMNS = ["signature", *SIGNATURE, "orders", "value_aed", "avg_hours", "max_hours", "high_value_orders",
                   "critical_orders", "uncategorized_orders", "impact", "flags", "mapped_reason", "novel", "trend",
                   "change"]
SPIKE_COLUMNS = ["stuck_reason", "orders", "baseline_median", "baseline_mad", "points", "z_score", "verdict"]
PATTERNS_KEY = "patterns"
BASELINE, NEW, GONE, UP, DOWN, SAME = "baseline", "NEW", "GONE", "UP", "DOWN", "SAME"
# MAD x 1.4826 estimates the standard deviation of normal data; a flat baseline (MAD 0) falls back
# to the mean absolute deviation x 1.2533, then to one order, so a jump from a steady count still
# shows without dividing by zero.
MAD_SCALE, MEAN_AD_SCALE = 1.4826, 1.2533


def _cell(values: pd.Series) -> pd.Series:
    return values.astype("string").str.strip().fillna("-").replace("", "-")


def signatures(scored: pd.DataFrame) -> pd.DataFrame:
    """Each order's signature cells (text, '-' for missing) and the joined signature."""
    has_falcon = scored["ftv_transaction_id"].notna() | scored["falcon_status"].notna()
    cells = pd.DataFrame({c: _cell(scored[c]) for c in SIGNATURE if c != "has_falcon"}, index=scored.index)
    cells.insert(SIGNATURE.index("has_falcon"), "has_falcon", np.where(has_falcon, "yes", "no"))
    signature = cells[SIGNATURE[0]].astype(str)
    for column in SIGNATURE[1:]:   # column by column, not a join per row
        signature = signature + " | " + cells[column].astype(str)
    cells["signature"] = signature
    return cells


def clusters(scored: pd.DataFrame, settings: ReportSettings, high_value_aed: float,
             critical_hours: float, by: tuple[str, ...] = ()) -> pd.DataFrame:
    """Clusters of at least `pattern_min_orders` orders sharing a signature, highest impact first.
    impact = orders x (value AED / 10,000) x (average hours / 24). With `by` (say the partition key
    of many ticks' backlogs stacked), the clusters of each of its groups, in one pass, by group."""
    keys = [*by, "signature"]
    cells = signatures(scored)
    frame = pd.concat([cells, scored[["order_id", "amount_aed", "hours_stuck", "stuck_reason", *by]]], axis=1)
    frame["high_value"] = frame["amount_aed"] >= high_value_aed
    frame["critical"] = frame["hours_stuck"] > critical_hours
    frame["uncategorized"] = frame["stuck_reason"] == UNCATEGORIZED
    grouped = frame.groupby(keys, sort=False)
    out = grouped.agg(**{c: (c, "first") for c in SIGNATURE}, orders=("order_id", "size"),
                      value_aed=("amount_aed", "sum"), avg_hours=("hours_stuck", "mean"),
                      max_hours=("hours_stuck", "max"), high_value_orders=("high_value", "sum"),
                      critical_orders=("critical", "sum"), uncategorized_orders=("uncategorized", "sum"))
    # The reason most of the cluster's orders have (ties: the first by name), for every cluster at once.
    reasons = frame.groupby([*keys, "stuck_reason"], sort=False).size().rename("n").reset_index()
    reasons = reasons.sort_values([*keys, "n", "stuck_reason"], ascending=[*(True for _ in keys), False, True])
    out["mapped_reason"] = reasons.drop_duplicates(keys).set_index(keys)["stuck_reason"]
    out = out[out["orders"] >= settings.pattern_min_orders].reset_index()
    out["impact"] = (out["orders"] * (out["value_aed"] / 10_000) * (out["avg_hours"] / 24)).round(2)
    flags = {"high value": out["high_value_orders"] > 0,
             "majority critical": out["critical_orders"] > out["orders"] / 2,
             f"> {settings.pattern_old_hours:g} h": out["max_hours"] > settings.pattern_old_hours}
    masks = np.column_stack([mask.to_numpy(dtype=bool) for mask in flags.values()])
    out["flags"] = pd.Series([", ".join(name for name, on in zip(flags, row, strict=True) if on) for row in masks],
                             index=out.index, dtype=str)
    out["novel"] = out["uncategorized_orders"] >= settings.novel_min_orders
    out["trend"], out["change"] = BASELINE, 0
    for column in ("value_aed", "avg_hours", "max_hours"):
        out[column] = out[column].round(2)
    out = out.astype({"high_value_orders": int, "critical_orders": int, "uncategorized_orders": int, "orders": int})
    order = out.sort_values([*by, "impact", "signature"], ascending=[*(True for _ in by), False, True])
    return order.reset_index(drop=True)[[*by, *CLUSTER_COLUMNS]]


def with_trend(current: pd.DataFrame, previous: pd.DataFrame | None) -> tuple[pd.DataFrame, pd.DataFrame]:
    """`current` with each cluster's trend against `previous` (the last report's clusters): UP +n,
    DOWN -n, SAME or NEW, all `baseline` when there is no previous report; and the previous
    clusters that are GONE."""
    if previous is None:
        return current.assign(trend=BASELINE, change=0), current.iloc[0:0]
    before = previous.set_index("signature")["orders"]
    change = current["orders"] - current["signature"].map(before)
    trend = np.select([change.isna(), change > 0, change < 0], [NEW, UP, DOWN], default=SAME)
    gone = previous[~previous["signature"].isin(current["signature"])].assign(trend=GONE)
    gone = gone.assign(change=-gone["orders"])
    return current.assign(trend=trend, change=change.fillna(current["orders"]).astype(int)), gone


def trend_label(trend: str, change: int) -> str:
    return {UP: f"UP +{change}", DOWN: f"DOWN −{abs(change)}", GONE: "GONE"}.get(trend, trend)


def reason_spikes(today: pd.Series, history: pd.DataFrame, settings: ReportSettings) -> pd.DataFrame:
    """Each stuck reason's count at the tick (`today`: reason -> orders) against its baseline
    (`history`: one row per earlier day held, a column per reason, counts; a reason absent from a
    day held counts 0): robust z = (today - median) / (1.4826 x MAD). A spike is above `spike_z`;
    fewer than `spike_min_points` days is "not enough history"."""
    reasons = sorted(set(today.index) | set(history.columns))
    base = history.reindex(columns=reasons, fill_value=0).fillna(0).astype(float)
    points = len(base)
    rows = []
    for reason in reasons:
        count = int(today.get(reason, 0))
        values = base[reason].to_numpy()
        if points < settings.spike_min_points:
            rows.append((reason, count, np.nan, np.nan, points, np.nan, "not enough history"))
            continue
        median = float(np.median(values))
        mad = float(np.median(np.abs(values - median)))
        scale = MAD_SCALE * mad or MEAN_AD_SCALE * float(np.mean(np.abs(values - median))) or 1.0
        z = (count - median) / scale
        rows.append((reason, count, median, mad, points, round(z, 2), "spike" if z > settings.spike_z else "normal"))
    frame = pd.DataFrame(rows, columns=SPIKE_COLUMNS)
    return frame.sort_values(["z_score", "stuck_reason"], ascending=[False, True], na_position="last").reset_index(
        drop=True)


def _name(row) -> str:
    return escape(f"{row.mapped_reason}: {row.currency} {row.sub_state}"
                  + (f" · payout {row.payout_status}" if row.payout_status != "-" else "")
                  + (f" · falcon {row.falcon_status}" if row.falcon_status != "-" else ""))


_ARROW = {UP: ":arrow_up:", DOWN: ":arrow_down:", NEW: ":new:", SAME: ":left_right_arrow:", BASELINE: ""}


@dataclass(frozen=True)
class PatternReport:
    tick: datetime
    clusters: pd.DataFrame      # CLUSTER_COLUMNS, with trend
    gone: pd.DataFrame          # the previous report's clusters no longer seen
    spikes: pd.DataFrame        # SPIKE_COLUMNS
    compared_with: str          # the previous report's partition, '' for a baseline

    def summary(self) -> dict[str, object]:
        c = self.clusters
        return {"clusters": len(c), "orders_in_clusters": int(c["orders"].sum()), "novel": int(c["novel"].sum()),
                "up": int((c["trend"] == UP).sum()), "down": int((c["trend"] == DOWN).sum()),
                "new": int((c["trend"] == NEW).sum()), "gone": len(self.gone),
                "spikes": int((self.spikes["verdict"] == "spike").sum()), "compared_with": self.compared_with}


def pattern_messages(report: PatternReport, settings: ReportSettings) -> list[Message]:
    """The main message (totals, top 3, novel alert, trend headline, spikes) and thread replies:
    the top clusters as a table, the novel clusters with what to do, and the spike test."""
    c, s = report.clusters, report.summary()
    lines = [f":microscope: *ECM Patterns* — {report.tick:%Y-%m-%d %H:%M} GST",
             f"*{s['orders_in_clusters']:,} orders in {s['clusters']:,} patterns* "
             f"(signatures shared by {settings.pattern_min_orders} or more orders)"]
    for i, row in enumerate(c.head(3).itertuples(), start=1):
        arrow = _ARROW.get(row.trend, "")
        lines.append(f"{i}. {_name(row)} — {row.orders:,} orders, AED {row.value_aed:,.0f} "
                     f"{arrow} {trend_label(row.trend, row.change) if row.trend != BASELINE else ''}".rstrip())
    if s["novel"]:
        lines.append(f":rotating_light: *{s['novel']} novel pattern{'s' if s['novel'] != 1 else ''}*: "
                     f"{settings.novel_min_orders} or more uncategorized orders share a signature (see thread)")
    lines.append("• Trend: baseline, the first report" if not report.compared_with else
                 f"• Trend vs {report.compared_with}: {s['up']} up, {s['down']} down, {s['new']} new, {s['gone']} gone")
    spiking = report.spikes[report.spikes["verdict"] == "spike"]
    if len(spiking):
        more = f" and {len(spiking) - 3} more (thread)" if len(spiking) > 3 else ""
        lines.append("• :chart_with_upwards_trend: Spikes: " + ", ".join(
            f"{escape(r.stuck_reason)} {r.orders} (usual {r.baseline_median:g}, z {r.z_score:g})"
            for r in spiking.head(3).itertuples()) + more)
    elif len(report.spikes) and (report.spikes["verdict"] == "not enough history").all():
        lines.append(f"• Spikes: not enough history ({int(report.spikes['points'].iloc[0])} earlier days in the "
                     f"lake, {settings.spike_min_points} needed)")
    else:
        lines.append("• Spikes: none — every reason within its usual range")
    main = "\n".join(lines)

    table = [f"{'#':>2} {'orders':>6} {'AED':>11} {'avg h':>6} {'impact':>9} {'trend':<9} pattern"]
    for i, row in enumerate(c.head(settings.pattern_top).itertuples(), start=1):
        table.append(f"{i:>2} {row.orders:>6} {row.value_aed:>11,.0f} {row.avg_hours:>6.1f} {row.impact:>9,.1f} "
                     f"{trend_label(row.trend, row.change):<9} {_name(row)}"
                     + (f" [{escape(row.flags)}]" if row.flags else ""))
    top = "\n".join([f"*Top {min(len(c), settings.pattern_top)} patterns by impact*", "```", *table, "```"])
    messages = [Message(PATTERNS_KEY, main, sections(main)), Message(f"{PATTERNS_KEY}/top", top, sections(top))]
    novel = c[c["novel"]]
    if len(novel):
        detail = ["*Novel patterns* (no rule classifies them: each is a candidate for a new stuck reason)"]
        for row in novel.head(10).itertuples():
            detail.append(f"• {row.orders} orders, AED {row.value_aed:,.0f}, avg {row.avg_hours:.0f} h — "
                          f"`{escape(row.signature)}`")
        detail.append("Action: check the source systems for this combination; if it recurs, add a "
                      "classification rule" + (" and a systemic fix (more than 10 orders)" if
                                               (novel["orders"] > 10).any() else ""))
        text = "\n".join(detail)
        messages.append(Message(f"{PATTERNS_KEY}/novel", text, sections(text)))
    spikes = ["*Spike test per stuck reason* (robust z-score against the same tick of the last "
              f"{settings.spike_days} days; spike above {settings.spike_z:g})", "```",
              f"{'reason':<38}{'now':>5}{'median':>8}{'z':>7}  verdict"]
    for r in report.spikes.itertuples():
        median = "" if pd.isna(r.baseline_median) else f"{r.baseline_median:g}"
        z = "" if pd.isna(r.z_score) else f"{r.z_score:g}"
        spikes.append(f"{escape(r.stuck_reason)[:38]:<38}{r.orders:>5}{median:>8}{z:>7}  {r.verdict}")
    spikes.append("```")
    text = "\n".join(spikes)
    messages.append(Message(f"{PATTERNS_KEY}/spikes", text, sections(text)))
    return messages


def sheet_rows(report: PatternReport, key: str) -> pd.DataFrame:
    """The Pattern Intelligence rows of this report: one per cluster (and one per cluster gone)."""
    rows = pd.concat([report.clusters, report.gone], ignore_index=True)
    return pd.DataFrame({
        "Triage Run": key, "Signature": rows["signature"], "Currency": rows["currency"], "Status": rows["status"],
        "Sub State": rows["sub_state"], "Lulu Status": rows["lulu_status"], "Has Falcon": rows["has_falcon"],
        "Falcon Status": rows["falcon_status"], "Payout Status": rows["payout_status"],
        "Payout Partner": rows["payout_partner"], "RFI Status": rows["rfi_status"],
        "Orders": rows["orders"].where(rows["trend"] != GONE, 0), "Value AED": rows["value_aed"].round(2),
        "Avg Hours": rows["avg_hours"].round(1), "Max Hours": rows["max_hours"].round(1),
        "High Value Orders": rows["high_value_orders"], "Critical Orders": rows["critical_orders"],
        "Impact": rows["impact"], "Flags": rows["flags"],
        "Trend": [trend_label(t, int(c)) for t, c in zip(rows["trend"], rows["change"], strict=True)],
        "Mapped Reason": rows["mapped_reason"], "Novel": np.where(rows["novel"].astype(bool), "yes", ""),
    })
