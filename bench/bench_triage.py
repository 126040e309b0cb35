"""Throughput and peak memory of the triage's domain chain, classify + qualify + score + assign, on
synthetic candidate orders; then the snapshot SQL on a demo warehouse. Prints a report; asserts nothing.

What it measures:

1. The machine: platform, Python, CPU count, total memory, load average, versions of pandas, numpy,
   pyarrow, duckdb, dagster. The load average is printed again at the end: the chain is single-threaded,
   so another busy process on a 2-core machine shows up as wall seconds above CPU seconds.
2. The domain chain on `--orders` synthetic candidate orders (default 1,000,000), stage by stage as
   the assets chain them:
     classification  classify + attach_catalogue
     qualification   qualify + flag_already_assigned (an Assignments tab of ~500 rows)
     scoring         score
     assignment      parse_roster (the 7 demo agents) + plan_assignments
   The extract (the SELECT list of `sql/stuck_orders.sql`, approx_* flags included) is drawn vectorised
   from a seeded RNG with value mixes taken from `classification_rules.yaml`, many missing values
   included, passed through `snapshot.derive_columns` as in production and written to Parquet as the
   lake writes it. Each of `--runs` runs (default 3) is a fresh Python process that reads those files
   as the lake reads them and runs the chain once, timed with `time.perf_counter` (wall) and
   `time.process_time` (CPU). Its peak RSS (`ru_maxrss`) is taken once the inputs are loaded and
   after each stage; the last one is the process peak of the chain, the snapshot it holds included,
   and never includes building the synthetic data (that happens in this parent process).
3. The snapshot SQL (unless `--skip-sql`): a demo warehouse at `--scale` times the default volume
   (`demo.generate_tables` + `demo.write_warehouse` into a temporary directory), then
   `snapshot.take_snapshot` against it three times (min and median seconds), in this process.

Run from the project root: `.venv/bin/python bench/bench_triage.py [--orders N] [--runs R] [--scale S]
[--skip-sql] [--seed K]`.
"""

from __future__ import annotations

import argparse
import gc
import json
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
from machine import load_average, mib, own_peak_rss_bytes, peak_rss_bytes, print_machine

from ecm_pipeline.domain.assignment import plan_assignments
from ecm_pipeline.domain.classification import attach_catalogue, classify, load_rules
from ecm_pipeline.domain.qualification import flag_already_assigned, qualify
from ecm_pipeline.domain.roster import parse_roster
from ecm_pipeline.domain.scoring import score
from ecm_pipeline.domain.snapshot import SNAPSHOT_COLUMNS, SOURCE_FIELDS, derive_columns
from ecm_pipeline.domain.tickets import AGENT_COLUMNS, ASSIGNMENT_COLUMNS
from ecm_pipeline.settings import Settings, load_catalogue, load_settings

if TYPE_CHECKING:
    from ecm_pipeline.resources.warehouse import WarehouseResource
    from ecm_pipeline.snapshot import Snapshot

# The demo generator, the warehouse resource and the snapshot module are imported where they are used,
# in this process only: the chain processes import what the chain needs and nothing else.

SEED = 7
RUNS = 3
# The 14:00 Asia/Dubai tick of 2026-11-21 as naive UTC (the warehouse stores UTC).
AS_OF = datetime(2026, 11, 21, 10, 0)
TRIAGE_RUN = "2026-11-21-14:00"
ASSIGNED_AT = "2026-11-21 14:05:00+0400"
SNAPSHOT_RUNS = 3
STAGES = ("classification", "qualification", "scoring", "assignment")
INPUT_FILES = ("snapshot", "assignments", "agents")
RESULT_PREFIX = "CHAIN-RESULT "

# The extract's columns in the order of the SELECT list of sql/stuck_orders.sql (without `as_of`
# and `scope`); derive_columns adds hours_stuck, time_bucket, category, amount_aed, partner_class and
# approximate_fields.
APPROX_FLAGS = tuple(SOURCE_FIELDS)
EXTRACT_COLUMNS = [
    "order_id", "owner_id", "status", "sub_state", "currency", "send_amount", "receive_amount", "acquirer",
    "created_at", "updated_at", "payment_status", "has_completed_payment", "payment_attempts", "falcon_status",
    "ftv_transaction_id", "has_lulu", "lulu_status", "lulu_main_status", "lulu_client", "has_payout",
    "payout_status", "payout_partner", "has_rfi", "rfi_status", "rfi_type", "rfi_created_at",
    "rfi_modified_at", "manual_payment_status", "checkout_status", "has_trm", "trm_seconds", "rda_status",
    *APPROX_FLAGS,
]

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
TICKET_STATUS = {"OPEN": 0.04, "IN_PROGRESS": 0.02, "ESCALATED": 0.02, "RESOLVED": 0.70, "CLOSED": 0.22}
# Share of orders whose source is known only approximately at the tick (the SQL's approx_* flags).
APPROX_SHARE = {"approx_order_state": 0.03, "approx_payment": 0.01, "approx_payout": 0.01, "approx_lulu": 0.01,
                "approx_rfi": 0.005}


# --- report helpers --------------------------------------------------------------------------------


def print_header(args: argparse.Namespace) -> None:
    print_machine()
    print(f"options       orders={args.orders:,} runs={args.runs} scale={args.scale:g} skip_sql={args.skip_sql} "
          f"seed={args.seed}")


def print_table(headers: list[str], rows: list[list[str]]) -> None:
    widths = [max(len(h), *(len(r[i]) for r in rows)) for i, h in enumerate(headers)]
    line = "  ".join(h.ljust(w) if i == 0 else h.rjust(w) for i, (h, w) in enumerate(zip(headers, widths, strict=True)))
    print(line)
    print("-" * len(line))
    for row in rows:
        print("  ".join(c.ljust(w) if i == 0 else c.rjust(w)
                        for i, (c, w) in enumerate(zip(row, widths, strict=True))))


# --- synthetic inputs ------------------------------------------------------------------------------


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
        **{flag: (rng.random(n) < APPROX_SHARE.get(flag, 0.0)).astype("int32") for flag in APPROX_FLAGS},
    }, columns=EXTRACT_COLUMNS)
    # The SQL extract is ordered by order_id.
    return extract.sort_values("order_id", ignore_index=True)


def synthetic_assignments(order_ids: np.ndarray, rng: np.random.Generator, rows: int = 500) -> pd.DataFrame:
    """An Assignments tab as the sheet returns it (all text): half the tickets for candidates in
    the snapshot, half for older orders; mostly resolved, agent e-mails in mixed case."""
    from ecm_pipeline.demo import AGENTS

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
    }, columns=list(ASSIGNMENT_COLUMNS)).astype(str)


def agents_tab() -> pd.DataFrame:
    """The demo Agents tab: 7 agents (one inactive, one test account, one blank Max Tickets)."""
    from ecm_pipeline.demo import AGENTS

    return pd.DataFrame(AGENTS, columns=list(AGENT_COLUMNS)).astype(str)


def build_inputs(directory: Path, n: int, seed: int) -> dict[str, Any]:
    """What a `--build` process does: the chain's inputs as Parquet files in `directory` (the
    snapshot, i.e. derive_columns of a synthetic extract; an Assignments tab; the Agents tab), and
    facts about them."""
    settings = load_settings()
    rng = np.random.default_rng(seed)
    start = time.perf_counter()
    extract = synthetic_extract(n, rng, AS_OF)
    built = time.perf_counter() - start
    start = time.perf_counter()
    snapshot = derive_columns(extract, AS_OF, settings)
    derived = time.perf_counter() - start
    del extract
    assignments = synthetic_assignments(snapshot["order_id"].to_numpy(dtype=object), rng)
    inputs = {"snapshot": snapshot, "assignments": assignments, "agents": agents_tab()}
    start = time.perf_counter()
    for name in INPUT_FILES:
        write_frame(inputs[name], directory / f"{name}.parquet")
    return {
        "extract_seconds": built, "derive_seconds": derived, "parquet_seconds": time.perf_counter() - start,
        "parquet_bytes": sum((directory / f"{name}.parquet").stat().st_size for name in INPUT_FILES),
        "rows": len(snapshot), "columns": list(snapshot.columns),
        "assignments_rows": len(inputs["assignments"]), "agents_rows": len(inputs["agents"]),
    }


def write_frame(frame: pd.DataFrame, path: Path) -> None:
    """As the lake writes a partition (`LakeResource.write`)."""
    pq.write_table(pa.Table.from_pandas(frame, preserve_index=False), str(path))


def read_frame(path: Path) -> pd.DataFrame:
    """As the lake reads a partition (`LakeResource.read`: one `ParquetFile`, one thread; its columns
    come in one chunk each, where `read_table` gives several)."""
    with pq.ParquetFile(str(path)) as file:
        return file.read(use_threads=False).to_pandas(use_threads=False)


# --- the chain, in a fresh process -----------------------------------------------------------------


def run_chain(directory: Path) -> dict[str, Any]:
    """What a `--chain` process does: read the inputs in `directory` as the lake reads them, then run
    the chain once, stage by stage as the assets chain them, keeping every stage's output (a
    pessimistic figure: the assets run in separate steps). Returns the figures as plain data."""
    settings = load_settings()
    load_rules()  # read the rule table and the catalogue once (cached), outside the timings
    load_catalogue()
    rss_imports = peak_rss_bytes()
    snapshot, assignments, agents = (read_frame(directory / f"{name}.parquet") for name in INPUT_FILES)
    gc.collect()
    as_of = pd.Timestamp(AS_OF)
    out: dict[str, Any] = {"rss_imports": rss_imports, "rss_inputs": peak_rss_bytes(),
                           "snapshot_bytes": int(snapshot.memory_usage(deep=True).sum()),
                           "stages": {name: {"steps": {}, "seconds": 0.0, "cpu": 0.0} for name in STAGES}}
    stages = out["stages"]

    def step(stage: str, name: str, fn: Any, *args: Any, **kwargs: Any) -> Any:
        wall, cpu = time.perf_counter(), time.process_time()
        result = fn(*args, **kwargs)
        wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
        stages[stage]["steps"][name] = wall
        stages[stage]["seconds"] += wall
        stages[stage]["cpu"] += cpu
        return result

    def done(stage: str, rows_in: int, rows_out: int) -> None:
        stages[stage].update(rows_in=rows_in, rows_out=rows_out, rss=peak_rss_bytes())

    wall, cpu = time.perf_counter(), time.process_time()
    classified = step("classification", "classify", classify, snapshot)
    classified = step("classification", "attach_catalogue", attach_catalogue, classified)
    done("classification", len(snapshot), len(classified))
    qualified, disqualified = step("qualification", "qualify", qualify, classified, settings.qualification)
    qualified = step("qualification", "flag_already_assigned", flag_already_assigned, qualified, assignments, as_of)
    done("qualification", len(classified), len(qualified))
    scored = step("scoring", "score", score, qualified, as_of, settings.scoring)
    done("scoring", len(qualified), len(scored))
    roster, problems = step("assignment", "parse_roster", parse_roster, agents, settings.assignment)
    plan = step("assignment", "plan_assignments", plan_assignments, scored, roster, assignments,
                settings.assignment, triage_run=TRIAGE_RUN, assigned_at=ASSIGNED_AT)
    done("assignment", len(scored), len(plan.new_rows))
    out["seconds"], out["cpu"] = time.perf_counter() - wall, time.process_time() - cpu
    out["rss_peak"] = peak_rss_bytes()
    out["vm_hwm"] = own_peak_rss_bytes()
    out["arrow_pool_peak"] = pa.default_memory_pool().max_memory()

    out["facts"] = {
        "rules_fired": int(classified["rule_id"].nunique()),
        "uncategorized": int((classified["stuck_reason"] == "uncategorized").sum()),
        "disqualified": {k: int(v) for k, v in disqualified["disqualification_code"].value_counts().items()},
        "already_assigned": int(qualified["already_assigned"].sum()),
        "priorities": {k: int(v) for k, v in scored["priority"].value_counts().sort_index().items()},
        "assignment": f"{len(plan.new_rows)} assigned, {len(plan.overflow):,} overflow, {plan.monitored:,} monitor "
                      f"only, {len(roster)} agents, {len(problems)} roster problems",
    }
    return out


def child_process(*options: str) -> dict[str, Any]:
    """Run this script with internal `options` in a fresh Python process; its figures (JSON).

    This process stays small (imports only) until the chain has run: a child's `ru_maxrss` starts
    from its parent's peak RSS (exec keeps the old address space's high-water mark), so building
    the synthetic data here would be counted in every chain run."""
    done = subprocess.run([sys.executable, str(Path(__file__).resolve()), *options],
                          capture_output=True, text=True, check=False)
    results = [line for line in done.stdout.splitlines() if line.startswith(RESULT_PREFIX)]
    if done.returncode != 0 or not results:
        sys.stderr.write(done.stdout + done.stderr)
        raise SystemExit(f"{Path(__file__).name} {' '.join(options)} failed (exit status {done.returncode})")
    return json.loads(results[-1].removeprefix(RESULT_PREFIX))


def gb(n_bytes: float) -> str:
    return f"{mib(n_bytes)} ({n_bytes / 1e9:.2f} GB)"


def chain_benchmark(args: argparse.Namespace) -> None:
    print(f"\n== domain chain on {args.orders:,} synthetic candidate orders, {args.runs} fresh process(es)")
    with tempfile.TemporaryDirectory(prefix="ecm-bench-chain-") as tmp:
        built = child_process("--build", tmp, "--orders", str(args.orders), "--seed", str(args.seed))
        columns = "the SNAPSHOT_COLUMNS contract" if tuple(built["columns"]) == SNAPSHOT_COLUMNS else (
            f"COLUMN MISMATCH: {built['columns']}")
        print(f"inputs built in another process: synthetic extract {built['extract_seconds']:.2f} s, "
              f"snapshot.derive_columns {built['derive_seconds']:.2f} s, Parquet {built['parquet_seconds']:.2f} s "
              f"({mib(built['parquet_bytes'])})")
        print(f"snapshot: {built['rows']:,} rows x {len(built['columns'])} columns ({columns}); "
              f"assignments tab {built['assignments_rows']} rows; agents tab {built['agents_rows']} rows")
        runs = []
        for _ in range(args.runs):
            runs.append(child_process("--chain", tmp))
            print(f"  run {len(runs)}: chain {runs[-1]['seconds']:.3f} s (CPU {runs[-1]['cpu']:.3f} s), "
                  f"peak RSS {mib(runs[-1]['rss_peak'])}; load average {load_average()}", flush=True)

    first = runs[0]
    print(f"\nsnapshot in memory {mib(first['snapshot_bytes'])}; peak RSS of a chain process after its imports "
          f"{mib(max(r['rss_imports'] for r in runs))}, once the inputs are loaded "
          f"{mib(max(r['rss_inputs'] for r in runs))}")
    headers = ["stage", "rows in", "rows out", *[f"run {i + 1} s" for i in range(len(runs))], "min s",
               "peak RSS after"]
    rows = [[name, f"{first['stages'][name]['rows_in']:,}", f"{first['stages'][name]['rows_out']:,}",
             *[f"{r['stages'][name]['seconds']:.3f}" for r in runs],
             f"{min(r['stages'][name]['seconds'] for r in runs):.3f}",
             mib(max(r['stages'][name]['rss'] for r in runs))] for name in STAGES]
    rows.append(["chain", f"{first['stages'][STAGES[0]]['rows_in']:,}", f"{first['stages'][STAGES[-1]]['rows_out']:,}",
                 *[f"{r['seconds']:.3f}" for r in runs], f"{min(r['seconds'] for r in runs):.3f}",
                 mib(max(r['rss_peak'] for r in runs))])
    print()
    print_table(headers, rows)
    print()
    fastest = min(runs, key=lambda r: r["seconds"])
    for name in STAGES:
        steps = ", ".join(f"{step} {secs:.3f} s" for step, secs in fastest["stages"][name]["steps"].items())
        print(f"{name:<15} {steps}")
    facts = first["facts"]
    print(f"rules fired: {facts['rules_fired']} of {len(load_rules())}; uncategorized: {facts['uncategorized']:,}")
    print("disqualified per code: " + ", ".join(f"{k} {v:,}" for k, v in facts["disqualified"].items()))
    print(f"already assigned: {facts['already_assigned']}; qualified per priority: "
          + ", ".join(f"{k} {v:,}" for k, v in facts["priorities"].items()))
    print(f"assignment: {facts['assignment']}")
    seconds = [r["seconds"] for r in runs]
    print(f"\nchain (classify + qualify + score + assign): min {min(seconds):.3f} s, median "
          f"{statistics.median(seconds):.3f} s, CPU {min(r['cpu'] for r in runs):.3f} s (min); process peak RSS "
          f"max {gb(max(r['rss_peak'] for r in runs))} (VmHWM {mib(max(r['vm_hwm'] or 0 for r in runs))}); "
          f"Arrow pool peak {mib(max(r['arrow_pool_peak'] for r in runs))}")


# --- SQL benchmark ---------------------------------------------------------------------------------


def timed_snapshot(warehouse: WarehouseResource, settings: Settings) -> tuple[float, Snapshot]:
    from ecm_pipeline.snapshot import take_snapshot

    start = time.perf_counter()
    snap = take_snapshot(warehouse, AS_OF, settings)
    return time.perf_counter() - start, snap


def sql_benchmark(args: argparse.Namespace, settings: Settings) -> None:
    from ecm_pipeline.demo import generate_tables, write_warehouse
    from ecm_pipeline.resources.warehouse import WarehouseResource

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
    parser.add_argument("--runs", type=int, default=RUNS,
                        help=f"runs of the chain, each in a fresh process (default {RUNS})")
    parser.add_argument("--scale", type=float, default=10, help="demo warehouse volume multiplier (default 10)")
    parser.add_argument("--skip-sql", action="store_true", help="skip the warehouse generation and snapshot SQL")
    parser.add_argument("--seed", type=int, default=SEED, help="RNG seed of the synthetic snapshot (default 7)")
    # Internal: what the child processes do (build the inputs; run the chain once).
    parser.add_argument("--build", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--chain", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.build is not None:
        print(RESULT_PREFIX + json.dumps(build_inputs(args.build, args.orders, args.seed)))
        return
    if args.chain is not None:
        print(RESULT_PREFIX + json.dumps(run_chain(args.chain)))
        return
    if args.orders < 1 or args.runs < 1:
        parser.error("--orders and --runs must be at least 1")

    print_header(args)
    chain_benchmark(args)
    if not args.skip_sql:
        sql_benchmark(args, load_settings())
    print(f"\nload average at the end  {load_average()}")
    print(f"this process ({'the report only' if args.skip_sql else 'the report, warehouse and snapshot SQL'}): "
          f"peak RSS {mib(peak_rss_bytes())}")


if __name__ == "__main__":
    main()
