"""The machine a benchmark ran on, and memory figures, as every script in bench/ prints them."""

from __future__ import annotations

import json
import os
import platform
import resource
import sys
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

MIB = 1024 * 1024
PACKAGES = ("pandas", "numpy", "pyarrow", "duckdb", "dagster")


def mib(n_bytes: float) -> str:
    return f"{n_bytes / MIB:,.1f} MiB"


def peak_rss_bytes() -> int:
    """Peak resident set size of this process so far (ru_maxrss is KiB on Linux)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def _proc_kib(path: str, field: str) -> int | None:
    """A `Field:   N kB` line of a /proc file, in bytes; None off Linux."""
    try:
        for line in Path(path).read_text().splitlines():
            if line.startswith(f"{field}:"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    return None


def own_peak_rss_bytes() -> int | None:
    """Peak RSS of this process's own address space (VmHWM), a cross-check of `ru_maxrss`."""
    return _proc_kib("/proc/self/status", "VmHWM")


def total_memory_bytes() -> int | None:
    return _proc_kib("/proc/meminfo", "MemTotal")


def load_average() -> str:
    try:
        return " ".join(f"{x:.2f}" for x in os.getloadavg()) + " (1, 5, 15 min)"
    except OSError:
        return "unknown"


def package_version(name: str) -> str:
    try:
        return version(name)
    except PackageNotFoundError:
        return "not installed"


def machine() -> dict[str, object]:
    total = total_memory_bytes()
    return {
        "platform": platform.platform(),
        "processor": f"{platform.machine()} {platform.processor()}".rstrip(),
        "python": f"{platform.python_version()} ({platform.python_implementation()}) {sys.executable}",
        "cpus": f"{os.cpu_count()} (usable by this process: {len(os.sched_getaffinity(0))})",
        "memory": mib(total) if total else "unknown (no /proc/meminfo)",
        "load average": load_average(),
        "packages": ", ".join(f"{name} {package_version(name)}" for name in PACKAGES),
    }


def print_machine() -> None:
    print("== machine")
    for name, value in machine().items():
        print(f"{name:<13} {value}")


# `ecm ARGS` in a fresh interpreter that reports, after the command, its own peak RSS (VmHWM) and
# the bytes it read from files (rchar). Not the child's ru_maxrss: Linux carries a parent's peak
# into its child's ru_maxrss across fork and exec, and a bench process holding the demo data or a
# fake's spreadsheets would be counted in every run.
_ECM_WRAPPER = """
import json, sys
from ecm_pipeline.cli import main
code = main(sys.argv[2:])
sys.stdout.flush()
def field(path, name):
    return next(int(line.split()[1]) for line in open(path) if line.startswith(name))
with open(sys.argv[1], "w") as out:
    json.dump({"code": code, "peak_rss_bytes": field("/proc/self/status", "VmHWM:") * 1024,
               "read_bytes": field("/proc/self/io", "rchar:")}, out)
"""


def run_ecm(args: list[str], env: dict[str, str], cwd: Path) -> dict:
    """`ecm ARGS` in a fresh process: exit code, wall seconds, peak RSS bytes, bytes read from
    files, and its stdout and stderr."""
    import subprocess
    import tempfile
    import time

    with tempfile.NamedTemporaryFile("r", suffix=".json") as figures:
        started = time.perf_counter()
        done = subprocess.run([sys.executable, "-c", _ECM_WRAPPER, figures.name, *args], cwd=cwd, env=env,
                              capture_output=True, text=True)
        wall = time.perf_counter() - started
        measured = json.loads(figures.read() or "{}")
    return {"code": measured.get("code", done.returncode), "wall_seconds": wall, **measured,
            "stdout": done.stdout, "stderr": done.stderr}
