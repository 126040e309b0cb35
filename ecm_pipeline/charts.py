"""The backlog trend chart (SPEC §10: where a person would rather look than read): per tick, the
backlog by reason family and by currency, and per day the inflow and the self-heal rate. One PNG,
drawn from the `backlog_history` and `backlog_flows` tables; matplotlib is imported when a chart is
drawn, never at definition load."""

from __future__ import annotations

import io

import pandas as pd

from ecm_pipeline.domain.history import daily_flow


def backlog_chart(history: pd.DataFrame, flows: pd.DataFrame, timezone: str, title: str) -> bytes:
    """The chart as PNG bytes. `history` and `flows` hold any number of ticks (one is fine)."""
    import matplotlib

    matplotlib.use("Agg")   # no display: a run never opens a window
    import matplotlib.dates as mdates
    import matplotlib.pyplot as plt

    ticks = pd.to_datetime(history["tick"]).dt.tz_localize("UTC").dt.tz_convert(timezone).dt.tz_localize(None)
    frame = history.assign(tick_local=ticks)
    by_family = frame.pivot_table(index="tick_local", columns="family", values="orders", aggfunc="sum",
                                  fill_value=0).sort_index()
    by_currency = frame.pivot_table(index="tick_local", columns="currency", values="orders", aggfunc="sum",
                                    fill_value=0).sort_index()
    all_ticks = pd.to_datetime(flows["tick"]).dt.tz_localize("UTC").dt.tz_convert(timezone).dt.tz_localize(None)
    by_family = by_family.reindex(sorted(set(all_ticks) | set(by_family.index)), fill_value=0)
    by_currency = by_currency.reindex(by_family.index, fill_value=0)
    days = daily_flow(flows, timezone)

    fig, (top, middle, bottom) = plt.subplots(3, 1, figsize=(11, 10), sharex=False,
                                              gridspec_kw={"height_ratios": [3, 2, 2]})
    fig.suptitle(title, fontsize=13)
    if len(by_family):
        order = by_family.sum().sort_values(ascending=False).index
        top.stackplot(by_family.index, *(by_family[c] for c in order), labels=list(order), alpha=0.85, step="post")
        top.legend(loc="upper left", fontsize=8, ncol=2, frameon=False)
    top.set_ylabel("stuck orders")
    top.set_title("Backlog per tick by reason family", fontsize=10, loc="left")
    for currency in by_currency.columns:
        middle.plot(by_currency.index, by_currency[currency], marker="." if len(by_currency) < 60 else None,
                    label=currency, drawstyle="steps-post")
    if len(by_currency.columns):
        middle.legend(loc="upper left", fontsize=8, frameon=False)
    middle.set_ylabel("stuck orders")
    middle.set_title("Backlog per tick by currency", fontsize=10, loc="left")
    bottom.bar(pd.to_datetime(days["day"]), days["entered"].fillna(0), width=0.8, color="#8da0cb",
               label="entered the backlog")
    bottom.set_ylabel("orders per day")
    bottom.set_title("Inflow per day, and the share of leavers that self-healed (no one assigned)",
                     fontsize=10, loc="left")
    rate = bottom.twinx()
    rate.plot(pd.to_datetime(days["day"]), days["self_heal_rate"] * 100, color="#d95f02", marker="o",
              label="self-healed %")
    rate.set_ylim(0, 105)
    rate.set_ylabel("self-healed %")
    handles = bottom.get_legend_handles_labels()[0] + rate.get_legend_handles_labels()[0]
    bottom.legend(handles, [h.get_label() for h in handles], loc="upper left", fontsize=8, frameon=False)
    for axis in (top, middle, bottom):
        axis.xaxis.set_major_formatter(mdates.DateFormatter("%d %b"))
        axis.grid(alpha=0.3)
    fig.tight_layout()
    out = io.BytesIO()
    fig.savefig(out, format="png", dpi=72)
    plt.close(fig)
    return out.getvalue()


def inflow_chart(inflow: pd.DataFrame, title: str) -> bytes:
    """The backlog report's inflow chart as PNG bytes: orders per created day, stacked by currency,
    spikes (more than twice the day before) marked with a star. `inflow` is
    `backlog_report.inflow`'s frame (day, currency, orders, spike)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    table = inflow.pivot_table(index="day", columns="currency", values="orders", aggfunc="sum", fill_value=0)
    labels = [f"{d:%a %d %b}" for d in table.index]
    fig, axis = plt.subplots(figsize=(8, 4))
    bottom = pd.Series(0, index=table.index)
    for currency in table.columns:
        axis.bar(labels, table[currency], bottom=bottom, label=currency)
        bottom = bottom + table[currency]
    spikes = inflow[inflow["spike"]].groupby("day").size()
    for i, day in enumerate(table.index):
        if day in spikes.index:
            axis.annotate("★ spike", (i, bottom[day]), ha="center", va="bottom", fontsize=8, color="#d62728")
    axis.set_ylabel("stuck orders created")
    axis.set_title(title, fontsize=10, loc="left")
    axis.legend(loc="upper left", fontsize=8, frameon=False)
    axis.grid(axis="y", alpha=0.3)
    fig.tight_layout()
    out = io.BytesIO()
    fig.savefig(out, format="png", dpi=72)
    plt.close(fig)
    return out.getvalue()
