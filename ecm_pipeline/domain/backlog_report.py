"""The daily backlog report (SPEC §9, facts §8): where the actionable backlog stands at the daily
tick and where it is going — size and direction against the same tick the day before, severity,
value at risk, cohorts by created day, the inflow of the last days by created date and currency
(spikes marked), the sub-states, and the pipeline of orders not yet old enough to triage.
Pure: frames in, frames and messages out."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime, timedelta

import pandas as pd

from ecm_pipeline.domain.briefing import Message, escape, sections
from ecm_pipeline.settings import Settings

SEVERITIES = ("critical", "action_required", "warning")
COHORTS = ("carry_over", "yesterday", "today")
BACKLOG_KEY = "backlog"
INFLOW_COLUMNS = ["day", "currency", "orders", "previous_day", "spike"]
SUB_STATE_COLUMNS = ["sub_state", "orders", "avg_hours", "max_hours"]


@dataclass(frozen=True)
class BacklogReport:
    tick: datetime                      # the daily tick, aware, in the schedule's timezone
    backlog: int
    previous: int | None                # the same tick the day before; None when the lake lacks it
    severity: dict[str, int]
    value_per_currency: dict[str, float]
    value_aed: float
    cohorts: dict[str, int]
    inflow: pd.DataFrame                # INFLOW_COLUMNS, one row per day x currency
    sub_states: pd.DataFrame            # SUB_STATE_COLUMNS, most orders first
    pipeline: int                       # stuck orders not yet old enough to triage
    pipeline_hours: float               # the age from which an order is triaged
    top_actions: list[tuple[str, int, str]]   # (reason, orders, the catalogue's action)

    @property
    def direction(self) -> str:
        if self.previous is None:
            return "no snapshot of the same tick yesterday to compare with"
        change = self.backlog - self.previous
        arrow = ":arrow_up:" if change > 0 else ":arrow_down:" if change < 0 else ":left_right_arrow:"
        return f"{arrow} {change:+,} vs yesterday ({self.previous:,})"

    def summary(self) -> dict[str, object]:
        """The figures as plain values, for the asset's metadata and the lake."""
        return {"backlog": self.backlog, "previous_day": self.previous, **{f"severity_{k}": v for k, v in
                self.severity.items()}, "value_aed": round(self.value_aed, 2),
                **{f"cohort_{k}": v for k, v in self.cohorts.items()}, "pipeline_under_12h": self.pipeline,
                "inflow_spikes": int(self.inflow["spike"].sum())}


def _local_days(stamps: pd.Series, timezone: str) -> pd.Series:
    return pd.to_datetime(stamps).dt.tz_localize("UTC").dt.tz_convert(timezone).dt.date


def inflow(orders: pd.DataFrame, today: date, days: int, timezone: str, spike_ratio: float) -> pd.DataFrame:
    """Orders (order_id, currency, created_at naive UTC) per created day x currency over the `days`
    days up to `today`, zeros included; a spike is a day above `spike_ratio` x the day before."""
    span = [today - timedelta(days=n) for n in range(days - 1, -1, -1)]
    currencies = sorted(set(orders["currency"].dropna())) or ["(none)"]
    counts = (orders.assign(day=_local_days(orders["created_at"], timezone))
              .groupby(["day", "currency"]).size())
    grid = pd.MultiIndex.from_product([span, currencies], names=["day", "currency"])
    frame = counts.reindex(grid, fill_value=0).rename("orders").reset_index()
    frame["previous_day"] = frame.groupby("currency")["orders"].shift(1)
    frame["spike"] = (frame["orders"] > spike_ratio * frame["previous_day"]).fillna(False).astype(bool)
    frame["previous_day"] = frame["previous_day"].astype("Int64")
    return frame[INFLOW_COLUMNS]


def report_backlog(scored: pd.DataFrame, previous: pd.DataFrame | None, recent: pd.DataFrame,
                   tick: datetime, settings: Settings) -> BacklogReport:
    """The report for the daily `tick` from its scored backlog, the scored backlog of the same tick
    the day before (None when unknown) and `recent`: every stuck order created in the inflow window,
    young ones included (the snapshot without its minimum age)."""
    cfg = settings.reports
    timezone = str(tick.tzinfo)
    today = tick.date()
    severity = scored["category"].value_counts()
    created = _local_days(scored["created_at"], timezone)
    cohort = pd.Series("carry_over", index=scored.index).mask(created == today - timedelta(days=1), "yesterday")
    cohort = cohort.mask(created == today, "today").value_counts()
    # One column's aggregations and value counts: named aggregations over several columns cost
    # tens of milliseconds per call, and a backfill makes one report per day.
    subs = (scored["hours_stuck"].groupby(scored["sub_state"].fillna("(blank)").rename("sub_state"))
            .agg(["size", "mean", "max"]).set_axis(["orders", "avg_hours", "max_hours"], axis=1).reset_index()
            .sort_values(["orders", "sub_state"], ascending=[False, True]).round(1))
    actions = scored.drop_duplicates("stuck_reason").set_index("stuck_reason")["action"]
    reasons = scored["stuck_reason"].value_counts().sort_index().sort_values(ascending=False, kind="stable").head(3)
    as_of = pd.Timestamp(tick).tz_convert("UTC").tz_localize(None)
    young = pd.to_datetime(recent["created_at"]) > as_of - pd.Timedelta(hours=settings.snapshot.min_age_hours)
    return BacklogReport(
        tick=tick, backlog=len(scored), previous=None if previous is None else len(previous),
        severity={s: int(severity.get(s, 0)) for s in SEVERITIES},
        value_per_currency={c: round(float(v), 2) for c, v in scored.groupby("currency")["send_amount"].sum().items()},
        value_aed=float(scored["amount_aed"].sum()),
        cohorts={c: int(cohort.get(c, 0)) for c in COHORTS},
        inflow=inflow(recent, today, cfg.inflow_days, timezone, cfg.inflow_spike_ratio),
        sub_states=subs[SUB_STATE_COLUMNS].reset_index(drop=True),
        pipeline=int(young.sum()),
        pipeline_hours=settings.snapshot.min_age_hours,
        top_actions=[(str(r), int(n), str(actions[r])) for r, n in reasons.items()],
    )


def _table(lines: list[str]) -> str:
    return "```\n" + "\n".join(lines) + "\n```"


def backlog_messages(report: BacklogReport, chart_note: str = "") -> list[Message]:
    """The main message (size, direction, severity, value, cohorts, pipeline, top actions) and two
    thread replies: the inflow by day and currency, then currency and sub-state breakdowns."""
    r = report
    value = " · ".join(f"{c} {v:,.0f}" for c, v in r.value_per_currency.items()) or "none"
    lines = [
        f":bar_chart: *ECM Backlog* — {r.tick:%Y-%m-%d %H:%M} GST",
        f"*{r.backlog:,} actionable orders* — {r.direction}",
        f"• Severity: {r.severity['critical']:,} critical · {r.severity['action_required']:,} action required · "
        f"{r.severity['warning']:,} warning",
        f"• Value at risk: {value} (AED {r.value_aed:,.0f} in all)",
        f"• Cohorts: {r.cohorts['carry_over']:,} carried over · {r.cohorts['yesterday']:,} from yesterday · "
        f"{r.cohorts['today']:,} from today",
        f"• Pipeline: {r.pipeline:,} stuck orders not yet {r.pipeline_hours:g} h old (triaged once they are)",
    ]
    spikes = r.inflow[r.inflow["spike"]]
    if len(spikes):
        lines.append("• :chart_with_upwards_trend: Inflow spike: " + ", ".join(
            f"{escape(s.currency)} on {s.day:%d %b} ({s.orders} vs {s.previous_day})" for s in spikes.itertuples()))
    if r.top_actions:
        lines.append("*Top actions:*")
        lines += [f"{i}. {escape(reason)} ({n:,}): {escape(action)}"
                  for i, (reason, n, action) in enumerate(r.top_actions, start=1)]
    main = "\n".join(lines)

    currencies = sorted(r.inflow["currency"].unique())
    header = f"{'day':<10}" + "".join(f"{c:>9}" for c in currencies)
    rows = []
    for day, group in r.inflow.groupby("day", sort=True):
        cells = group.set_index("currency")
        rows.append(f"{day:%a %d %b} " + "".join(
            f"{int(cells.loc[c, 'orders']):>8}{'*' if cells.loc[c, 'spike'] else ' '}" for c in currencies))
    inflow_text = "\n".join([f"*Inflow by created date, last {r.inflow['day'].nunique()} days* "
                             "(stuck now; * = more than twice the day before)", _table([header, *rows]),
                             *([chart_note] if chart_note else [])])
    subs = [f"{'sub_state':<24}{'orders':>7}{'avg h':>8}{'max h':>8}"] + [
        f"{escape(s.sub_state)[:24]:<24}{s.orders:>7}{s.avg_hours:>8.1f}{s.max_hours:>8.1f}"
        for s in r.sub_states.itertuples()]
    money = [f"{'currency':<9}{'value':>15}"] + [f"{escape(c):<9}{v:>15,.2f}" for c, v in r.value_per_currency.items()]
    breakdown = "\n".join(["*Value at risk per currency*", _table(money), "*Sub-states*", _table(subs)])
    return [Message(BACKLOG_KEY, main, sections(main)),
            Message(f"{BACKLOG_KEY}/inflow", inflow_text, sections(inflow_text)),
            Message(f"{BACKLOG_KEY}/breakdown", breakdown, sections(breakdown))]
