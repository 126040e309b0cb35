"""The `stuck_orders` snapshots: one set-based query (sql/stuck_orders.sql, a Jinja template) for any
number of ticks, split into one snapshot per tick, plus the derived columns of the domain.

Many ticks cost one query, not one per tick: the template joins the orders' state intervals with
the ticks, so a backfill of a month reads each table once."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from functools import cache
from typing import Protocol

import jinja2
import pandas as pd

from ecm_pipeline.domain.snapshot import EXCLUDED_COLUMNS, derive_columns
from ecm_pipeline.settings import Settings, package_file

HISTORY_TABLE = "orders_goms_history"
# Without the history table, a snapshot taken this long after its tick cannot place orders whose
# state changed in between (they may have been stuck at the tick and be completed now).
LIVE_TOLERANCE = timedelta(hours=1)
NO_HISTORY_NOTE = ("the warehouse has no orders_goms_history: an order whose state changed after the tick "
                   "(completed since, say) cannot be placed at it")
CONTRACT_TABLES = (
    "orders_goms", "payments_goms", "falcon_transactions_v2", "transaction_payout", "lulu_data", "transfer_rfi",
    "uae_manual_payments", "checkout_payment_data", "fulfillments_goms", "rda_fulfillments", HISTORY_TABLE,
)


class Warehouse(Protocol):
    def query(self, sql: str, params: dict | None = None) -> pd.DataFrame: ...
    def tables(self, names: list[str]) -> set[str]: ...


@dataclass(frozen=True)
class Snapshot:
    as_of: datetime                 # the tick, naive UTC
    candidates: pd.DataFrame        # the SPEC §4 contract, one row per order
    excluded: pd.DataFrame          # rows in the window left out for a reason that must be reported
    note: str = ""                  # what makes the whole snapshot approximate, if anything
    approximate_field_counts: dict[str, int] = field(default_factory=dict)   # field -> orders

    @property
    def approximate_orders(self) -> int:
        return int((self.candidates["approximate_fields"] != "").sum())

    @property
    def mode(self) -> str:
        """`exact` when every field of every order is known as of the tick, else `approximate`."""
        return "approximate" if self.approximate_orders or self.note else "exact"

    def reason(self) -> str:
        """Why the snapshot is approximate, field by field; '' when exact."""
        parts = [self.note] if self.note else []
        if self.approximate_orders:
            detail = ", ".join(f"{name} ({n})" for name, n in self.approximate_field_counts.items())
            parts.append(f"{self.approximate_orders} of {len(self.candidates)} orders have fields the warehouse "
                         f"only knows as changed after the tick: {detail}")
        return "; ".join(parts)


@cache
def _template() -> jinja2.Template:
    environment = jinja2.Environment(undefined=jinja2.StrictUndefined, autoescape=False, keep_trailing_newline=True)
    return environment.from_string(package_file("ecm_pipeline.sql", "stuck_orders.sql").read_text())


@cache
def snapshot_sql(n_ticks: int, with_history: bool, one_order: bool = False) -> str:
    """The query for `n_ticks` ticks; `one_order`: restricted to the orders `:order_ids` (the field
    command `ecm order` asks for one, its test for a few), every other line the pipeline's own."""
    return _template().render(n_ticks=n_ticks, with_history=with_history, one_order=one_order)


def snapshot_params(ticks: Sequence[datetime], settings: Settings, order_ids: Sequence[str] | None = None) -> dict:
    cfg = settings.snapshot
    window, min_age = timedelta(days=cfg.window_days), timedelta(hours=cfg.min_age_hours)
    params: dict = {
        "first_window_start": min(ticks) - window,
        "last_newest_created": max(ticks) - min_age,
        "last_as_of": max(ticks),
        "currencies": list(cfg.currencies),
        "statuses": list(cfg.statuses),
        "actionable_sub_states": list(cfg.actionable_sub_states),
        "never_sub_states": list(cfg.never_sub_states),
    }
    for i, tick in enumerate(ticks):
        params |= {f"as_of_{i}": tick, f"window_start_{i}": tick - window, f"newest_created_{i}": tick - min_age}
    if order_ids is not None:
        params["order_ids"] = list(order_ids)
    return params


def take_snapshots(warehouse: Warehouse, ticks: Sequence[datetime], settings: Settings,
                   order_ids: Sequence[str] | None = None) -> dict[datetime, Snapshot]:
    """The snapshot of every tick (naive UTC), from one query; `order_ids` restricts it to those orders."""
    ticks = sorted(set(ticks))
    has_history = HISTORY_TABLE in warehouse.tables([HISTORY_TABLE])
    sql = snapshot_sql(len(ticks), has_history, one_order=order_ids is not None)
    rows = warehouse.query(sql, snapshot_params(ticks, settings, order_ids))
    rows["as_of"] = pd.to_datetime(rows["as_of"]).astype("datetime64[us]")
    candidates = rows[rows["scope"] == "candidate"].reset_index(drop=True)
    derived = derive_columns(candidates.drop(columns=["scope"]), candidates["as_of"], settings)
    derived["as_of"] = candidates["as_of"].to_numpy()
    excluded = rows.loc[rows["scope"] != "candidate", ["as_of", *[c for c in EXCLUDED_COLUMNS if c != "exclusion"]]]
    excluded.insert(2, "exclusion", rows.loc[rows["scope"] != "candidate", "scope"].to_numpy())
    now = datetime.now(UTC).replace(tzinfo=None)
    # The query returns rows ordered by tick: each tick's rows are one slice, not a scan per tick.
    stamps = [pd.Timestamp(t) for t in ticks]
    mine = _slices(derived.drop(columns=["as_of"]), derived["as_of"], stamps)
    left_out = _slices(excluded.drop(columns=["as_of"])[list(EXCLUDED_COLUMNS)], excluded["as_of"], stamps)
    fields = derived.loc[derived["approximate_fields"] != "", ["as_of", "approximate_fields"]]
    fields = fields.assign(field=fields["approximate_fields"].str.split(",")).explode("field")
    field_counts: dict[pd.Timestamp, dict[str, int]] = {}
    sizes = fields.groupby(["as_of", "field"]).size().sort_values(ascending=False, kind="stable")
    for (stamp, name), n in sizes.items():
        field_counts.setdefault(stamp, {})[str(name)] = int(n)
    out = {}
    for tick, stamp in zip(ticks, stamps, strict=True):
        note = "" if has_history or now - tick <= LIVE_TOLERANCE else NO_HISTORY_NOTE
        out[tick] = Snapshot(tick, mine[stamp], left_out[stamp], note, field_counts.get(stamp, {}))
    return out


def _slices(frame: pd.DataFrame, as_of: pd.Series, stamps: list[pd.Timestamp]) -> dict[pd.Timestamp, pd.DataFrame]:
    """`frame` split by its (sorted) `as_of` column into one frame per tick, empty ones included."""
    if not as_of.is_monotonic_increasing:
        order = as_of.argsort(kind="stable")
        frame, as_of = frame.iloc[order], as_of.iloc[order]
    values = as_of.to_numpy()
    bounds = {s: (values.searchsorted(s.to_datetime64(), "left"), values.searchsorted(s.to_datetime64(), "right"))
              for s in stamps}
    return {s: frame.iloc[lo:hi].reset_index(drop=True) for s, (lo, hi) in bounds.items()}


def take_snapshot(warehouse: Warehouse, as_of: datetime, settings: Settings) -> Snapshot:
    return take_snapshots(warehouse, [as_of], settings)[as_of]



@cache
def _order_states_sql(with_history: bool) -> str:
    template = jinja2.Environment(undefined=jinja2.StrictUndefined, autoescape=False).from_string(
        package_file("ecm_pipeline.sql", "order_states.sql").read_text())
    return template.render(with_history=with_history)


def order_states(warehouse: Warehouse, order_ids: Sequence[str], as_of: datetime) -> pd.DataFrame:
    """The status and sub_state of these orders as of `as_of` (naive UTC), one query; orders the
    warehouse does not know (or not yet at `as_of`) are absent."""
    ids = sorted({str(i) for i in order_ids})
    if not ids:
        return pd.DataFrame({c: pd.Series(dtype=object) for c in ("order_id", "status", "sub_state", "approximate")})
    has_history = HISTORY_TABLE in warehouse.tables([HISTORY_TABLE])
    return warehouse.query(_order_states_sql(has_history), {"order_ids": ids, "as_of": as_of})


def data_span(warehouse: Warehouse) -> tuple[datetime, datetime] | None:
    """When the warehouse's orders begin and its newest order change (naive UTC), or None if it holds
    no order: what a backfill can describe."""
    row = warehouse.query("SELECT MIN(created_at) AS first_order, MAX(updated_at) AS newest_change "
                          "FROM orders_goms").iloc[0]
    if pd.isna(row["first_order"]):
        return None
    return pd.Timestamp(row["first_order"]).to_pydatetime(), pd.Timestamp(row["newest_change"]).to_pydatetime()
