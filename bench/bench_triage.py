"""Throughput and memory figures for the triage pipeline. Prints a report; asserts nothing.

What it measures:

1. The machine: platform, Python, CPU count, total memory, versions of pandas, numpy, duckdb, dagster.
2. The pure domain stages on a synthetic snapshot of `--orders` candidate orders (default 1,000,000)
   with exactly the columns `snapshot.derive_columns` produces. The extract (the SELECT list of
   `sql/stuck_orders.sql`) is drawn vectorised from a seeded RNG with value mixes taken from
   `classification_rules.yaml`, many missing values included, and then passed through
   `derive_columns` as in production. Stages, chained as in `assets.py`:
     classification  classify + attach_catalogue
     qualification   qualify + flag_already_assigned (Assignments tab of ~500 rows)
     scoring         score
     assignment      parse_roster (the 7 demo agents) + plan_assignments
   Seconds come from an untraced pass (`time.perf_counter`). Memory comes from a second, identical
   pass under `tracemalloc` (which slows allocation-heavy code, hence the separate pass): the peak
   of each stage above what was allocated when it started, and the peak of the whole chain.
   tracemalloc sees Python and NumPy allocations, not Arrow buffers (pandas' `str` columns), so the
   Arrow pool's peak and the process peak RSS (`ru_maxrss`) are printed as well.
3. The snapshot SQL (unless `--skip-sql`): a demo warehouse at `--scale` times the default volume
   (`demo.generate_tables` + `demo.write_warehouse` into a temporary directory), then
   `snapshot.take_snapshot` against it three times (min and median seconds).

Run from the project root: `.venv/bin/python bench/bench_triage.py [--orders N] [--scale S] [--skip-sql]`.
"""

from __future__ import annotations

import argparse
import gc
import os
import platform
import resource
import statistics
import tempfile
import time
import tracemalloc
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa

from ecm_pipeline.demo import AGENTS, generate_tables, write_warehouse
from ecm_pipeline.domain.assignment import plan_assignments
from ecm_pipeline.domain.classification import attach_catalogue, classify, load_rules
from ecm_pipeline.domain.qualification import flag_already_assigned, qualify
from ecm_pipeline.domain.roster import parse_roster
from ecm_pipeline.domain.scoring import score
from ecm_pipeline.resources.sheet import AGENT_COLUMNS, ASSIGNMENT_COLUMNS
from ecm_pipeline.resources.warehouse import WarehouseResource
from ecm_pipeline.settings import Settings, load_catalogue, load_settings
from ecm_pipeline.snapshot import Snapshot, derive_columns, take_snapshot

MIB = 1024 * 1024
SEED = 7
# The 14:00 Asia/Dubai tick of 2026-11-21 as naive UTC (the warehouse stores UTC).
AS_OF = datetime(2026, 11, 21, 10, 0)
TRIAGE_RUN = "2026-11-21-14:00"
ASSIGNED_AT = "2026-11-21 14:05:00+0400"
SNAPSHOT_RUNS = 3

# The extract's columns in the order of the SELECT list of sql/stuck_orders.sql (without `scope`).
EXTRACT_COLUMNS = [
    "order_id", "owner_id", "status", "sub_state", "currency", "send_amount", "receive_amount", "acquirer",
    "created_at", "updated_at", "payment_status", "has_completed_payment", "payment_attempts", "falcon_status",
    "ftv_transaction_id", "has_lulu", "lulu_status", "lulu_main_status", "lulu_client", "has_payout",
    "payout_status", "payout_partner", "partner_class", "has_rfi", "rfi_status", "rfi_type", "rfi_created_at",
    "rfi_modified_at", "manual_payment_status", "checkout_status", "has_trm", "trm_seconds", "rda_status",
]
SNAPSHOT_COLUMNS = [*EXTRACT_COLUMNS, "hours_stuck", "time_bucket", "category", "amount_aed"]

# Value mixes (value: weight; None is a missing value). Weights are normalised.
CURRENCY = {"AED": 0.45, "GBP": 0.45, "EUR": 0.10}
STATUS = {"PROCESSING_DEAL_IN": 0.62, "FAILED": 0.18, "PENDING": 0.15, "IN_PROGRESS": 0.05}
# sub_state follows status: a FAILED order waits for a refund, a PENDING one for its payment.
SUB_STATE_FAILED = {"FAILED": 0.55, "TRIGGER_REFUND": 0.25, "REFUND_TRIGGERED": 0.15, "MANUAL_REVIEW": 0.05}
SUB_STATE_PENDING = {"PENDING": 0.75, "AWAIT_RETRY_INTENT": 0.20, "PAYMENT_SUCCESS": 0.05}
SUB_STATE_PROCESSING = {
    "FULFILLMENT_PENDING": 0.30, "FULFILLMENT_TRIGGER": 0.22, "AWAIT_EXTERNAL_ACTION": 0.22, "MANUAL_REVIEW": 0.08,
    "AWAIT_RETRY_INTENT": 0.08, "REFUND_TRIGGERED": 0.06, "PAYMENT_SUCCESS": 0.04,
}
AED_ACQUIRER = {"CHECKOUT": 0.55, "LEANTECH": 0.25, "UAE_MANUAL": 0.15, None: 0.05}
EU_ACQUIRER = {"TRUELAYER": 0.6, "CHECKOUT": 0.35, None: 0.05}
PAYMENT_STATUS = {"COMPLETED": 0.70, "FAILED": 0.13, "INITIATED": 0.04, "PENDING": 0.03, "CREATED": 0.02,
                  "RECONCILED": 0.02, None: 0.06}
FALCON_STATUS = {"PROCESSING": 0.70, "COMPLETED": 0.10, "FAILED": 0.08, "QUEUED": 0.10, None: 0.02}
LULU_STATUS = {"TXN_TRANSMITTED": 0.45, "CANCELLATION_COMPLETED": 0.10, "CREATED": 0.10, "CREDITED": 0.10,
               "CANCELLATION_REQUEST_CREATED": 0.07, "PAYMENT_PENDING": 0.13, None: 0.05}
LULU_MAIN_STATUS = {"PENDING": 0.85, "COMPLETED": 0.10, None: 0.05}
LULU_CLIENT = {"LULU": 0.95, None: 0.05}
PAYOUT_STATUS = {"PROCESSING": 0.55, "COMPLETED": 0.12, "ADDITIONAL_DOCUMENTS_REQUIRED": 0.10, "PENDING": 0.12,
                 "FAILED": 0.08, None: 0.03}
PAYOUT_PARTNER = {
    "VANCE_RDA": 0.40, "YBL_API": 0.10, "HDFC_API": 0.10, "SINGHAI_2025_V2": 0.06, "VELTOPAYZ_V4": 0.06,
    "VELTOPAYZ_HVT_BULK": 0.07, "VELTOPAYZ_KPR_BULK": 0.07, "TANGOPE_V3": 0.06, "ARMSTRONG_PARTNER_DASHBOARD": 0.04,
    None: 0.04,
}
RFI_STATUS = {"REQUESTED": 0.40, "SUBMITTED": 0.15, "REJECTED": 0.10, "SENT_TO_PROVIDER": 0.07, "RE_OPEN": 0.05,
              "VERIFIED": 0.15, "EXPIRED": 0.06, None: 0.02}
RFI_TYPE = {"ID_PROOF": 0.4, "PURPOSE_OF_TRANSFER": 0.3, "RELATIONSHIP": 0.25, None: 0.05}
MANUAL_STATUS = {"RECONCILED": 0.7, "PENDING": 0.2, "REJECTED": 0.1}
CHECKOUT_STATUS = {"CAPTURED": 0.8, "AUTHORIZED": 0.15, "DECLINED": 0.05}
RDA_STATUS = {"ONHOLD": 0.6, "PROCESSING": 0.3, "COMPLETED": 0.1}
AMOUNT = {"AED": (2400.0, 260.0, 60100.0), "GBP": (480.0, 20.0, 12000.0), "EUR": (420.0, 20.0, 12000.0)}
FX = {"AED": 1.0, "GBP": 4.9, "EUR": 4.25}
BULK_PARTNERS = ("VELTOPAYZ_HVT_BULK", "VELTOPAYZ_KPR_BULK", "ARMSTRONG_PARTNER_DASHBOARD", "TANGOPE_V3")
BULK_ABOVE_50K = ("SINGHAI_2025_V2", "VELTOPAYZ_V4", "VELTOPAYZ_V5", "VELTOPAYZ_V6")
TICKET_STATUS = {"OPEN": 0.04, "IN_PROGRESS": 0.02, "ESCALATED": 0.02, "RESOLVED": 0.70, "CLOSED": 0.22}


# --- report helpers --------------------------------------------------------------------------------


def mib(n_bytes: float) -> str:
    return f"{n_bytes / MIB:,.1f} MiB"


def peak_rss_bytes() -> int:
    """Peak resident set size of this process so far (ru_maxrss is KiB on Linux)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def total_memory_bytes() -> int | None:
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    return None


def package_version(name: str) -> str:
    try:
        return version(name)
    except PackageNotFoundError:
        return "not installed"


def print_header(args: argparse.Namespace) -> None:
    total = total_memory_bytes()
    print("== machine")
    print(f"platform      {platform.platform()}")
    print(f"python        {platform.python_version()} ({platform.python_implementation()})")
    print(f"cpus          {os.cpu_count()}")
    print(f"memory        {mib(total) if total else 'unknown (no /proc/meminfo)'}")
    print("packages      " + ", ".join(
        f"{name} {package_version(name)}" for name in ("pandas", "numpy", "duckdb", "dagster", "pyarrow")))
    print(f"options       orders={args.orders:,} scale={args.scale:g} skip_sql={args.skip_sql} seed={args.seed}")


def print_table(headers: list[str], rows: list[list[str]]) -> None:
    widths = [max(len(h), *(len(r[i]) for r in rows)) for i, h in enumerate(headers)]
    line = "  ".join(h.ljust(w) if i == 0 else h.rjust(w) for i, (h, w) in enumerate(zip(headers, widths, strict=True)))
    print(line)
    print("-" * len(line))
    for row in rows:
        print("  ".join(c.ljust(w) if i == 0 else c.rjust(w)
                        for i, (c, w) in enumerate(zip(row, widths, strict=True))))


# --- synthetic snapshot ----------------------------------------------------------------------------


def draw(rng: np.random.Generator, mix: dict[str | None, float], n: int) -> np.ndarray:
    """n values (object array, None for missing) drawn with the mix's weights."""
    values = np.array(list(mix), dtype=object)
    weights = np.array(list(mix.values()), dtype=float)
    return rng.choice(values, size=n, p=weights / weights.sum())


def present_where(mask: np.ndarray, values: np.ndarray) -> np.ndarray:
    """values where mask, missing (None) elsewhere."""
    return np.where(mask, values, None).astype(object)


def ids(prefix: np.ndarray | str, numbers: np.ndarray, width: int) -> np.ndarray:
    """Identifiers: prefix + the number zero-padded to width (object array)."""
    body = pd.Series(numbers).astype(str).str.zfill(width)
    return (pd.Series(prefix, index=body.index, dtype=object) + body).to_numpy(dtype=object)


def synthetic_extract(n: int, rng: np.random.Generator, as_of: datetime) -> pd.DataFrame:
    """n rows shaped like the candidate rows of sql/stuck_orders.sql, drawn vectorised."""
    currency = draw(rng, CURRENCY, n)
    aed = currency == "AED"
    eu = ~aed
    prefix = np.select([aed, currency == "GBP"], ["AE", "UK"], default="EU").astype(object)
    order_id = ids(prefix, rng.permutation(n) + 10_000_000, 10)

    # Age: a third young (12-48 h), the rest a long tail up to the 30-day window.
    young = rng.random(n) < 0.35
    hours = np.where(young, rng.uniform(12.0, 48.0, n), np.minimum(48.0 + rng.exponential(150.0, n), 719.9))
    now = np.datetime64(as_of, "us")
    created = now - (hours * 3600e6).astype("int64").astype("timedelta64[us]")
    updated = created + (rng.uniform(0.0, 1.0, n) * hours * 3600e6).astype("int64").astype("timedelta64[us]")

    median = np.select([aed, currency == "GBP"], [AMOUNT["AED"][0], AMOUNT["GBP"][0]], default=AMOUNT["EUR"][0])
    low = np.select([aed, currency == "GBP"], [AMOUNT["AED"][1], AMOUNT["GBP"][1]], default=AMOUNT["EUR"][1])
    high = np.select([aed, currency == "GBP"], [AMOUNT["AED"][2], AMOUNT["GBP"][2]], default=AMOUNT["EUR"][2])
    send = np.clip(median * rng.lognormal(0.0, 0.85, n), low, high).round(2)
    fx = np.select([aed, currency == "GBP"], [FX["AED"], FX["GBP"]], default=FX["EUR"])
    receive = (send * fx * rng.uniform(22.0, 25.0, n)).round(2)
    bad = rng.random(n)
    send[bad < 0.001] = np.nan                          # missing amount: quarantined as invalid_amount
    send[(bad >= 0.001) & (bad < 0.0015)] *= -1.0       # negative amount: quarantined too

    status = draw(rng, STATUS, n)
    sub_state = np.select(
        [status == "FAILED", status == "PENDING"],
        [draw(rng, SUB_STATE_FAILED, n), draw(rng, SUB_STATE_PENDING, n)],
        default=draw(rng, SUB_STATE_PROCESSING, n),
    ).astype(object)
    acquirer = np.where(aed, draw(rng, AED_ACQUIRER, n), draw(rng, EU_ACQUIRER, n))
    payment_status = draw(rng, PAYMENT_STATUS, n)
    paid_now = payment_status == "COMPLETED"
    no_payment = pd.isna(payment_status)
    has_completed = paid_now | (~no_payment & (rng.random(n) < 0.08))  # a retry completed earlier
    attempts = np.where(no_payment, 0, 1 + rng.poisson(0.35, n))

    # GBP/EUR orders in fulfilment mostly reached Falcon; AED ones mostly sit at Lulu.
    in_fulfilment = np.isin(status, ["PROCESSING_DEAL_IN", "IN_PROGRESS"])
    has_falcon = rng.random(n) < np.select([aed, in_fulfilment], [0.30, 0.70], default=0.20)
    txn = ids("FT", np.arange(n) + 20_000_000, 10)
    has_lulu = aed & (rng.random(n) < 0.85)
    has_payout = has_falcon & (rng.random(n) < 0.85)
    partner = present_where(has_payout, draw(rng, PAYOUT_PARTNER, n))
    partner_class = np.select(
        [
            (receive > 50_000) & np.isin(partner, BULK_ABOVE_50K),
            np.isin(partner, BULK_PARTNERS),
            partner == "VANCE_RDA",
            ~pd.isna(partner),
        ],
        ["bulk_vda_partner", "bulk_vda_partner", "rda_partner", "vda_api_partner"],
        default=None,
    ).astype(object)
    has_rfi = rng.random(n) < 0.18
    rfi_created = created + (rng.uniform(0.02, 0.9, n) * hours * 3600e6).astype("int64").astype("timedelta64[us]")
    rfi_modified = np.minimum(
        rfi_created + (rng.exponential(10.0, n) * 3600e6).astype("int64").astype("timedelta64[us]"), now)
    manual = np.isin(acquirer, ["UAE_MANUAL", "LEANTECH"]) & (rng.random(n) < 0.5)
    checkout = (acquirer == "CHECKOUT") & (rng.random(n) < 0.7)
    has_trm = eu & (rng.random(n) < 0.15)
    rda = has_payout & (partner == "VANCE_RDA") & (rng.random(n) < 0.5)
    nat = np.datetime64("NaT", "us")

    extract = pd.DataFrame({
        "order_id": order_id,
        "owner_id": ids("U", rng.integers(0, 99_999_999, n), 8),
        "status": status,
        "sub_state": sub_state,
        "currency": currency,
        "send_amount": send,
        "receive_amount": receive,
        "acquirer": acquirer,
        "created_at": created,
        "updated_at": updated,
        "payment_status": payment_status,
        "has_completed_payment": has_completed,
        "payment_attempts": attempts,
        "falcon_status": present_where(has_falcon, draw(rng, FALCON_STATUS, n)),
        "ftv_transaction_id": present_where(has_falcon, txn),
        "has_lulu": has_lulu,
        "lulu_status": present_where(has_lulu, draw(rng, LULU_STATUS, n)),
        "lulu_main_status": present_where(has_lulu, draw(rng, LULU_MAIN_STATUS, n)),
        "lulu_client": present_where(has_lulu, draw(rng, LULU_CLIENT, n)),
        "has_payout": has_payout,
        "payout_status": present_where(has_payout, draw(rng, PAYOUT_STATUS, n)),
        "payout_partner": partner,
        "partner_class": partner_class,
        "has_rfi": has_rfi,
        "rfi_status": present_where(has_rfi, draw(rng, RFI_STATUS, n)),
        "rfi_type": present_where(has_rfi, draw(rng, RFI_TYPE, n)),
        "rfi_created_at": np.where(has_rfi, rfi_created, nat),
        "rfi_modified_at": np.where(has_rfi, rfi_modified, nat),
        "manual_payment_status": present_where(manual, draw(rng, MANUAL_STATUS, n)),
        "checkout_status": present_where(checkout, draw(rng, CHECKOUT_STATUS, n)),
        "has_trm": has_trm,
        "trm_seconds": np.where(has_trm, rng.uniform(60.0, 1800.0, n).round(), np.nan),
        "rda_status": present_where(rda, draw(rng, RDA_STATUS, n)),
    }, columns=EXTRACT_COLUMNS)
    # The SQL extract is ordered by order_id.
    return extract.sort_values("order_id", ignore_index=True)


def synthetic_assignments(order_ids: np.ndarray, rng: np.random.Generator, rows: int = 500) -> pd.DataFrame:
    """An Assignments tab as the sheet returns it (all text): half the tickets for candidates in
    the snapshot, half for older orders; mostly resolved, agent e-mails in mixed case."""
    in_snapshot = rng.random(rows) < 0.5
    known = rng.choice(order_ids, size=rows) if len(order_ids) else np.full(rows, "AE0000000000", dtype=object)
    order = np.where(in_snapshot, known, ids("UK", rng.integers(0, 10_000_000, rows), 10))
    emails = np.array([a[0] for a in AGENTS if not a[0].startswith("test.")], dtype=object)
    agent = rng.choice(emails, size=rows)
    agent = np.where(rng.random(rows) < 0.3, np.char.upper(agent.astype(str)), agent)
    status = draw(rng, TICKET_STATUS, rows)
    status = np.where(rng.random(rows) < 0.1, np.char.lower(status.astype(str)), status)  # typed by hand
    return pd.DataFrame({
        "Order ID": order,
        "Assigned Agent": agent,
        "Assigned At": "2026-11-20 14:03:00+0400",
        "Status": status,
        "Priority": draw(rng, {"P1": 0.2, "P2": 0.3, "P3": 0.3, "P4": 0.2}, rows),
        "Currency": draw(rng, CURRENCY, rows),
        "Amount": [f"{x:.2f}" for x in rng.uniform(20, 20_000, rows)],
        "Hours Stuck": [f"{x:.1f}" for x in rng.uniform(12, 200, rows)],
        "Diagnosis": "stuck_at_lulu",
        "Notes": "",
        "Triage Run": "manual",
    }, columns=ASSIGNMENT_COLUMNS).astype(str)


def agents_tab() -> pd.DataFrame:
    """The demo Agents tab: 7 agents (one inactive, one test account, one blank Max Tickets)."""
    return pd.DataFrame(AGENTS, columns=AGENT_COLUMNS).astype(str)


# --- domain benchmark ------------------------------------------------------------------------------


@dataclass
class Stage:
    name: str
    rows_in: int = 0
    rows_out: int = 0
    seconds: float = 0.0
    steps: dict[str, float] = field(default_factory=dict)  # sub-step -> seconds
    traced_peak: int = 0  # tracemalloc peak above the stage's starting allocation
    traced_top: int = 0   # tracemalloc peak during the stage, absolute
    note: str = ""


def timed(stage: Stage, step: str, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
    start = time.perf_counter()
    result = fn(*args, **kwargs)
    elapsed = time.perf_counter() - start
    stage.steps[step] = stage.steps.get(step, 0.0) + elapsed
    stage.seconds += elapsed
    return result


def run_domain(snapshot: pd.DataFrame, assignments: pd.DataFrame, agents: pd.DataFrame, settings: Settings,
               traced: bool) -> tuple[list[Stage], dict[str, Any]]:
    """One pass of the four stages, chained as the assets chain them."""
    as_of = pd.Timestamp(AS_OF)
    stages = [Stage("classification"), Stage("qualification"), Stage("scoring"), Stage("assignment")]
    classification, qualification, scoring, assignment = stages
    facts: dict[str, Any] = {}

    def begin() -> int:
        if traced:
            tracemalloc.reset_peak()
            return tracemalloc.get_traced_memory()[0]
        return 0

    def end(stage: Stage, base: int) -> None:
        if traced:
            stage.traced_top = tracemalloc.get_traced_memory()[1]
            stage.traced_peak = stage.traced_top - base

    base = begin()
    classification.rows_in = len(snapshot)
    classified = timed(classification, "classify", classify, snapshot)
    classified = timed(classification, "attach_catalogue", attach_catalogue, classified)
    classification.rows_out = len(classified)
    end(classification, base)
    facts["rules_fired"] = classified["rule_id"].nunique()
    facts["uncategorized"] = int((classified["stuck_reason"] == "uncategorized").sum())

    base = begin()
    qualification.rows_in = len(classified)
    qualified, disqualified = timed(qualification, "qualify", qualify, classified, settings.qualification)
    qualified = timed(qualification, "flag_already_assigned", flag_already_assigned, qualified, assignments)
    qualification.rows_out = len(qualified)
    already = int(qualified["already_assigned"].sum())
    qualification.note = f"{len(disqualified):,} disqualified, {already} already assigned"
    end(qualification, base)
    facts["disqualified"] = disqualified["disqualification_code"].value_counts().to_dict()

    base = begin()
    scoring.rows_in = len(qualified)
    scored = timed(scoring, "score", score, qualified, as_of, settings.scoring)
    scoring.rows_out = len(scored)
    end(scoring, base)
    facts["priorities"] = scored["priority"].value_counts().sort_index().to_dict()

    base = begin()
    assignment.rows_in = len(scored)
    roster, problems = timed(assignment, "parse_roster", parse_roster, agents, settings.assignment)
    plan = timed(assignment, "plan_assignments", plan_assignments, scored, roster, assignments,
                 settings.assignment, triage_run=TRIAGE_RUN, assigned_at=ASSIGNED_AT)
    assignment.rows_out = len(plan.new_rows)
    assignment.note = (f"{len(plan.overflow):,} overflow, {plan.monitored:,} monitor only, "
                       f"{len(roster)} agents, {len(problems)} roster problems")
    end(assignment, base)
    return stages, facts


def domain_benchmark(args: argparse.Namespace, settings: Settings) -> None:
    print(f"\n== domain stages on {args.orders:,} synthetic candidate orders")
    rng = np.random.default_rng(args.seed)
    start = time.perf_counter()
    extract = synthetic_extract(args.orders, rng, AS_OF)
    built = time.perf_counter() - start
    start = time.perf_counter()
    snapshot = derive_columns(extract, AS_OF, settings)
    derived = time.perf_counter() - start
    del extract
    assignments = synthetic_assignments(snapshot["order_id"].to_numpy(dtype=object), rng)
    agents = agents_tab()
    columns = "same columns as derive_columns output" if list(snapshot.columns) == SNAPSHOT_COLUMNS else (
        f"COLUMN MISMATCH: {list(snapshot.columns)}")
    print(f"synthetic extract built in {built:.2f} s; snapshot.derive_columns {derived:.2f} s")
    print(f"snapshot: {len(snapshot):,} rows x {snapshot.shape[1]} columns "
          f"({columns}), "
          f"{mib(snapshot.memory_usage(deep=True).sum())} in memory")
    print(f"assignments tab: {len(assignments)} rows; agents tab: {len(agents)} rows")

    gc.collect()
    stages, facts = run_domain(snapshot, assignments, agents, settings, traced=False)
    gc.collect()
    tracemalloc.start()
    traced_stages, _ = run_domain(snapshot, assignments, agents, settings, traced=True)
    tracemalloc.stop()
    chain_peak = max(s.traced_top for s in traced_stages)  # tracing started with the chain: base 0
    for stage, traced in zip(stages, traced_stages, strict=True):
        stage.traced_peak = traced.traced_peak

    print()
    print_table(
        ["stage", "rows in", "rows out", "seconds", "tracemalloc peak"],
        [[s.name, f"{s.rows_in:,}", f"{s.rows_out:,}", f"{s.seconds:.3f}", mib(s.traced_peak)] for s in stages]
        + [["total", f"{stages[0].rows_in:,}", f"{stages[-1].rows_out:,}", f"{sum(s.seconds for s in stages):.3f}",
            mib(chain_peak)]],
    )
    print()
    for s in stages:
        steps = ", ".join(f"{name} {secs:.3f} s" for name, secs in s.steps.items())
        print(f"{s.name:<15} {steps}" + (f"  [{s.note}]" if s.note else ""))
    print(f"rules fired: {facts['rules_fired']} of {len(load_rules())}; uncategorized: {facts['uncategorized']:,}")
    print("disqualified per code: " + ", ".join(f"{k} {v:,}" for k, v in facts["disqualified"].items()))
    print("qualified per priority: " + ", ".join(f"{k} {v:,}" for k, v in facts["priorities"].items()))
    print(f"memory: tracemalloc peak of the whole chain {mib(chain_peak)} "
          "(stage peaks are above what the stage started with; Arrow buffers not included); "
          f"Arrow pool peak {mib(pa.default_memory_pool().max_memory())}; "
          f"process peak RSS so far {mib(peak_rss_bytes())}")


# --- SQL benchmark ---------------------------------------------------------------------------------


def timed_snapshot(warehouse: WarehouseResource, settings: Settings) -> tuple[float, Snapshot]:
    start = time.perf_counter()
    snap = take_snapshot(warehouse, AS_OF, settings, live=False)
    return time.perf_counter() - start, snap


def sql_benchmark(args: argparse.Namespace, settings: Settings) -> None:
    print(f"\n== snapshot SQL on a demo warehouse at scale {args.scale:g}")
    with tempfile.TemporaryDirectory(prefix="ecm-bench-") as tmp:
        path = Path(tmp) / "warehouse.duckdb"
        start = time.perf_counter()
        tables = generate_tables(seed=SEED, anchor=AS_OF, scale=args.scale)
        generated = time.perf_counter() - start
        start = time.perf_counter()
        write_warehouse(tables, path)
        written = time.perf_counter() - start
        counts = {name: len(frame) for name, frame in tables.items() if not name.startswith("_")}
        del tables
        gc.collect()
        print(f"generate_tables {generated:.2f} s, write_warehouse {written:.2f} s "
              f"(total {generated + written:.2f} s); file {mib(path.stat().st_size)}")
        print(f"orders_goms {counts['orders_goms']:,} rows; orders_goms_history {counts['orders_goms_history']:,}; "
              f"all tables {sum(counts.values()):,}")

        warehouse = WarehouseResource(url=f"duckdb:///{path}")
        runs = [timed_snapshot(warehouse, settings) for _ in range(SNAPSHOT_RUNS)]
        seconds = [secs for secs, _ in runs]
        snap = runs[-1][1]
        print(f"take_snapshot x{SNAPSHOT_RUNS}: min {min(seconds):.3f} s, median {statistics.median(seconds):.3f} s "
              f"({', '.join(f'{s:.3f}' for s in seconds)})")
        print(f"candidates {len(snap.candidates):,} rows, excluded {len(snap.excluded):,}, mode {snap.mode}; "
              f"as of {AS_OF:%Y-%m-%d %H:%M} UTC, window from "
              f"{AS_OF - timedelta(days=settings.snapshot.window_days):%Y-%m-%d %H:%M}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--orders", type=int, default=1_000_000, help="synthetic candidate orders (default 1,000,000)")
    parser.add_argument("--scale", type=float, default=10, help="demo warehouse volume multiplier (default 10)")
    parser.add_argument("--skip-sql", action="store_true", help="skip the warehouse generation and snapshot SQL")
    parser.add_argument("--seed", type=int, default=SEED, help="RNG seed of the synthetic snapshot (default 7)")
    args = parser.parse_args()

    settings = load_settings()
    load_rules()  # read the rule table and the catalogue once (cached), outside the timings
    load_catalogue()
    print_header(args)
    domain_benchmark(args, settings)
    if not args.skip_sql:
        sql_benchmark(args, settings)
    print(f"\nprocess peak RSS {mib(peak_rss_bytes())}")


if __name__ == "__main__":
    main()
