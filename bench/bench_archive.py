"""What closed tickets cost a triage run, before and after archiving. Prints figures; asserts nothing.

For 0, 100,000 and 300,000 closed tickets (RESOLVED, assigned 90 days ago) added to the demo's
sheet — the local SQLite sheet, and the fake Google Sheets API on 127.0.0.1 driven through the real
gspread client — `ecm triage` of the live tick (which archives them) and then the next run (a
re-run of the tick, with the tab back to open work), each in a fresh process: wall seconds, peak
RSS (the child's own VmHWM), bytes the process read from files (`rchar`: imports, the warehouse,
the lake, the local sheet) and, against the fake, the bytes the API sent back; then the rows left
in Assignments.

Run from the project root: `.venv/bin/python bench/bench_archive.py [--rows 0 100000 300000]
[--stores local google]`.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from machine import mib, print_machine, run_ecm  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

def run(env: dict[str, str]) -> tuple[float, int, int]:
    """One `ecm triage` in a fresh process: (wall seconds, peak RSS bytes, bytes read from files)."""
    figures = run_ecm(["triage"], env, ROOT)
    if figures["code"] != 0:
        raise SystemExit(f"ecm triage failed:\n{figures['stderr'][-2000:]}")
    return figures["wall_seconds"], figures["peak_rss_bytes"], figures["read_bytes"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, nargs="+", default=[0, 100_000, 300_000])
    parser.add_argument("--stores", nargs="+", choices=["local", "google"], default=["local", "google"])
    args = parser.parse_args()
    print_machine()
    import ecm_pipeline_tests.test_archive as seeding
    from ecm_pipeline.demo import generate_demo
    from ecm_pipeline.domain.tickets import TABS
    from ecm_pipeline.partitions import as_of_utc, live_tick_key
    from ecm_pipeline.resources.sheet import LocalSheetStore
    from ecm_pipeline_tests.fakes.sheets_server import FakeSheets, service_account_key

    work = Path(tempfile.mkdtemp(prefix="ecm-bench-archive-"))
    template = work / "template"
    generate_demo(template, seed=7, anchor=as_of_utc(live_tick_key()))
    print(f"\n{'store':>6} {'closed rows':>11} {'run':>16} {'wall s':>7} {'peak RSS':>11} {'file MiB':>9} "
          f"{'API MiB':>8} {'rows left':>10}")
    try:
        for store in args.stores:
            for rows in args.rows:
                home = work / f"{store}-{rows}"
                shutil.copytree(template, home)
                if rows:
                    seeding.OLD_CLOSED, seeding.RECENT_CLOSED = rows, 0
                    seeding.seeded(home)
                env = {**os.environ, "ECM_HOME": str(home), "DAGSTER_HOME": str(home / "dagster")}
                env.pop("ECM_SETTINGS", None)
                fake = None
                if store == "google":
                    fake = FakeSheets().start()
                    local = LocalSheetStore(home / "sheet.sqlite")
                    for tab, columns in TABS.items():
                        fake.add_tab(tab, [list(columns), *local.read_tab(tab)[list(columns)].values.tolist()])
                    env.update(SPREADSHEET_ID=fake.spreadsheet_id, GOOGLE_SHEETS_API_ENDPOINT=fake.url,
                               GOOGLE_SERVICE_ACCOUNT_JSON=json.dumps(service_account_key(f"{fake.url}/token")))
                try:
                    for label in ("archiving", "after archiving"):
                        sent = fake.downloaded() if fake else 0
                        seconds, peak, read = run(env)
                        api = f"{(fake.downloaded() - sent) / 2**20:>8.1f}" if fake else f"{'-':>8}"
                        if fake:
                            left = len(fake.rows("Assignments")) - 1
                        else:
                            left = len(LocalSheetStore(home / "sheet.sqlite").read_tab("Assignments"))
                        print(f"{store:>6} {rows:>11,} {label:>16} {seconds:>7.1f} {mib(peak):>11} "
                              f"{read / 2**20:>9.1f} {api} {left:>10,}", flush=True)
                finally:
                    if fake:
                        fake.stop()
                shutil.rmtree(home, ignore_errors=True)
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
