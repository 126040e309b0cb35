"""API calls per triage run against the local fake Google Sheets and Slack servers, for backlogs
of about 100, 600 and 5,000 orders (and 600 orders with a 20-agent roster). Prints a table;
asserts nothing.

Expected shape: Sheets calls do not grow with orders (one read per tab per step, one batch
append); Slack calls grow only with the number of agents given tickets (one thread reply each).
The 5,000-order backlog is above the 2,000-order stop gate, so the runs use a settings overlay
(`ECM_SETTINGS`) with `gates.backlog_stop` lifted; everything else is the production code path.

Run from the project root: `.venv/bin/python bench/bench_api_calls.py`.
"""

from __future__ import annotations

import json
import os
import platform
import shutil
import sys
import tempfile
import warnings
from collections import Counter
from pathlib import Path

warnings.filterwarnings("ignore")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the fakes live with the tests

import dagster as dg  # noqa: E402

from ecm_pipeline.assets import triage_assets  # noqa: E402
from ecm_pipeline.checks import quality_gates  # noqa: E402
from ecm_pipeline.demo import generate_demo  # noqa: E402
from ecm_pipeline.domain.tickets import TABS  # noqa: E402
from ecm_pipeline.partitions import as_of_utc, live_tick_key  # noqa: E402
from ecm_pipeline.resources import environment_resources  # noqa: E402
from ecm_pipeline.resources.google_sheet import GoogleSheetResource  # noqa: E402
from ecm_pipeline.resources.sheet import LocalSheetStore  # noqa: E402
from ecm_pipeline.resources.slack_api import SlackApiResource  # noqa: E402
from ecm_pipeline_tests.fakes.sheets_server import FakeSheets, service_account_key  # noqa: E402
from ecm_pipeline_tests.fakes.slack_server import FakeSlack  # noqa: E402

BACKLOG_PER_SCALE = 450  # actionable orders of the default demo (scale 1)
CASES = [(100, 7), (600, 7), (5000, 7), (600, 20)]


def lift_stop_gate() -> None:
    """Settings with the 2,000-order stop limit lifted (the 5,000-order case), for every run."""
    path = Path(tempfile.mkdtemp(prefix="ecm-bench-settings-")) / "settings.yaml"
    path.write_text("gates: {backlog_stop: 100000}\n")
    os.environ["ECM_SETTINGS"] = str(path)


def seed_sheet(fake: FakeSheets, home: Path, agents: int) -> None:
    local = LocalSheetStore(str(home / "sheet.sqlite"))
    for tab, columns in TABS.items():
        rows = local.read_tab(tab)[list(columns)].values.tolist()
        if tab == "Agents":
            rows += [[f"extra.agent{i}@aspora.example", f"Extra Agent {i}", "Ops", "", "TRUE", "10"]
                     for i in range(agents - len(rows))]
        fake.add_tab(tab, [list(columns), *rows])


def run_case(orders: int, agents: int) -> dict:
    home = Path(tempfile.mkdtemp(prefix="ecm-bench-api-"))
    os.environ["ECM_HOME"] = str(home)
    generate_demo(home, seed=7, anchor=as_of_utc(live_tick_key()), scale=orders / BACKLOG_PER_SCALE)
    try:
        return triage_against_fakes(home, agents)
    finally:
        shutil.rmtree(home, ignore_errors=True)


def triage_against_fakes(home: Path, agents: int) -> dict:
    """The live tick's triage of the demo in `home` (ECM_HOME), its Sheet copied to a fake Google
    Sheets API with `agents` agents and Slack on a fake API: the calls each received."""
    key = live_tick_key()
    sheets, slack = FakeSheets(), FakeSlack()
    sheets.start()
    slack.start()
    try:
        seed_sheet(sheets, home, agents)
        resources = {
            **environment_resources(),
            "sheet": GoogleSheetResource(spreadsheet_id=sheets.spreadsheet_id, api_endpoint=sheets.url,
                                         service_account_json=json.dumps(service_account_key(f"{sheets.url}/token"))),
            "slack": SlackApiResource(token=slack.token, channel=slack.channel, base_url=slack.url),
        }
        result = dg.materialize([*triage_assets, *quality_gates], partition_key=key, resources=resources,
                                instance=dg.DagsterInstance.ephemeral(), raise_on_error=False,
                                run_config={"loggers": {"console": {"config": {"log_level": "WARNING"}}}})
        meta = {e.materialization.asset_key.to_user_string(): e.materialization.metadata
                for e in result.get_asset_materialization_events()}
        return {
            "ok": result.success,
            "qualified": meta["qualified_orders"]["dagster/partition_row_count"].value,
            "assigned": meta["assignments"]["new_assignments"].value if "assignments" in meta else 0,
            "sheets": Counter(r.op for r in sheets.requests),
            "slack": Counter(r.method for r in slack.requests),
        }
    finally:
        sheets.stop()
        slack.stop()


def main() -> None:
    print(f"machine: {platform.platform()}; python {platform.python_version()}; cpus {os.cpu_count()}")
    lift_stop_gate()
    print(f"{'orders':>7} {'agents':>6} {'assigned':>8} {'run':>4} {'sheets':>6}  {'slack':>5}  detail")
    for orders, agents in CASES:
        r = run_case(orders, agents)
        sheets = ", ".join(f"{op} {n}" for op, n in sorted(r["sheets"].items()))
        slack = ", ".join(f"{m} {n}" for m, n in sorted(r["slack"].items()))
        print(f"{r['qualified']:>7,} {agents:>6} {r['assigned']:>8} {'ok' if r['ok'] else 'FAIL':>4} "
              f"{sum(r['sheets'].values()):>6}  {sum(r['slack'].values()):>5}  sheets: {sheets} | slack: {slack}")


if __name__ == "__main__":
    main()
