"""Take the README's screenshots of the Dagster UI again, with headless Chromium.

    apt-get install -y chromium                # Debian's package, once
    .venv/bin/pip install playwright           # drives that Chromium (no browser download)
    .venv/bin/python docs/screenshots.py

In a scratch ECM_HOME and DAGSTER_HOME it generates the demo, backfills the week before the live
tick, triages the live tick, triages the tick before it with a backlog limit the demo exceeds (so
a blocking gate fails), starts `dagster-webserver` and saves PNGs of the asset graph, the failed
gate, the snapshot's metadata plots and the backfill's trend chart into docs/images/.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
IMAGES = ROOT / "docs" / "images"
BROWSER = shutil.which("chromium") or shutil.which("chromium-browser") or shutil.which("google-chrome")
PORT = 3777


def ecm(*args: str, env: dict[str, str]) -> None:
    subprocess.run([sys.executable, "-m", "ecm_pipeline.cli", *args], cwd=ROOT, env=env, check=True,
                   stdout=subprocess.DEVNULL)


def shoot(page, path: str, name: str, *, wait_for: str | None = None, click: str | None = None,
          settle_ms: int = 4000) -> None:
    """Open a UI page, dismiss the community dialog if it shows, wait for it to render (and click
    `click`, a button's text), save a PNG."""
    page.goto(f"http://127.0.0.1:{PORT}{path}", wait_until="networkidle", timeout=120_000)
    page.wait_for_timeout(settle_ms)
    skip = page.get_by_role("button", name="Skip")
    if skip.count():
        skip.first.click()
        page.wait_for_timeout(1000)
    if wait_for:
        page.get_by_text(wait_for).first.wait_for(timeout=60_000)
    if click:
        page.get_by_text(click, exact=True).last.click()
        page.wait_for_timeout(settle_ms)
    target = IMAGES / f"{name}.png"
    page.screenshot(path=str(target))
    print(f"{target.relative_to(ROOT)}  <- {path}")


def main() -> None:
    if BROWSER is None:
        sys.exit("no Chromium: apt-get install -y chromium")
    IMAGES.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix="ecm-screens-"))
    env = {**os.environ, "ECM_HOME": str(work / "ecm"), "DAGSTER_HOME": str(work / "dagster")}
    env.pop("ECM_SETTINGS", None)
    from ecm_pipeline.partitions import live_tick_key, triage_partitions

    ecm("demo", env=env)
    live = live_tick_key()
    keys = triage_partitions.get_partition_keys()
    before = keys[keys.index(live) - 1]
    ecm("backfill", "--from", keys[keys.index(live) - 21], "--to", keys[keys.index(live) - 2], env=env)
    ecm("triage", env=env)
    strict = work / "strict.yaml"
    strict.write_text("gates: {backlog_stop: 100}\n")
    subprocess.run([sys.executable, "-m", "ecm_pipeline.cli", "triage", "--partition", before], cwd=ROOT,
                   env={**env, "ECM_SETTINGS": str(strict)}, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    shutil.copy(work / "ecm" / "charts" / "backlog_history.png", IMAGES / "backfill-chart.png")
    print("docs/images/backfill-chart.png  <- ecm backfill")

    server = subprocess.Popen([sys.executable, "-m", "dagster_webserver", "-w", "workspace.yaml", "-h", "127.0.0.1",
                               "-p", str(PORT)], cwd=ROOT, env=env, stdout=subprocess.DEVNULL,
                              stderr=subprocess.DEVNULL)
    try:
        for _ in range(240):
            try:
                urllib.request.urlopen(f"http://127.0.0.1:{PORT}/server_info", timeout=2)
                break
            except OSError:
                time.sleep(0.5)
        from playwright.sync_api import sync_playwright

        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=BROWSER, args=["--no-sandbox"])
            page = browser.new_page(viewport={"width": 1600, "height": 1000})
            graph = "/locations/ecm_pipeline/asset-groups/ecm_triage"
            shoot(page, graph, "asset-graph", wait_for="stuck_orders")
            shoot(page, "/assets/qualified_orders?view=checks&checkDetail=backlog_count_within_stop_limit",
                  "failed-gate")
            shoot(page, "/assets/stuck_orders?view=overview", "plots", click="Plots")
            browser.close()
    finally:
        server.terminate()
        server.wait(timeout=30)
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
