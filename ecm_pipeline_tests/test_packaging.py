"""The package as a Docker image or a plain `pip install` gets it: a wheel (not an editable
install) carries the SQL, the quality suites, the settings and the instance config, and runs
`ecm demo` and `ecm triage` from another directory; and the layering of the code holds."""

from __future__ import annotations

import ast
import os
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

PROJECT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("wheel")
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "--quiet",
                    "--disable-pip-version-check", "-w", str(out), str(PROJECT)], check=True, timeout=300,
                   cwd=out)
    [built] = out.glob("ecm_pipeline-*.whl")
    return built


def test_the_wheel_carries_its_data_files(wheel: Path) -> None:
    names = set(zipfile.ZipFile(wheel).namelist())
    for name in ("ecm_pipeline/sql/stuck_orders.sql", "ecm_pipeline/expectations/stuck_orders.json",
                 "ecm_pipeline/expectations/qualified_orders.json", "ecm_pipeline/expectations/assignments.json",
                 "ecm_pipeline/settings.yaml", "ecm_pipeline/stuck_reasons.yaml",
                 "ecm_pipeline/classification_rules.yaml", "ecm_pipeline/dagster.yaml"):
        assert name in names, name


@pytest.mark.slow
def test_an_installed_wheel_runs_demo_and_triage_from_elsewhere(wheel: Path, tmp_path: Path) -> None:
    site = tmp_path / "site"
    subprocess.run([sys.executable, "-m", "pip", "install", "--no-deps", "--quiet", "--disable-pip-version-check",
                    "--target", str(site), str(wheel)], check=True, timeout=300)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    # The installed copy comes first on the path, so nothing is read from the source tree.
    env = {**os.environ, "PYTHONPATH": str(site), "ECM_HOME": str(tmp_path / "ecm"),
           "DAGSTER_HOME": str(tmp_path / "dagster")}
    probe = subprocess.run([sys.executable, "-c", "import ecm_pipeline; print(ecm_pipeline.__file__)"],
                           cwd=elsewhere, env=env, capture_output=True, text=True, check=True)
    assert probe.stdout.strip().startswith(str(site))
    for args in (["demo"], ["triage"]):
        done = subprocess.run([sys.executable, "-m", "ecm_pipeline.cli", *args], cwd=elsewhere, env=env,
                              capture_output=True, text=True, timeout=300)
        assert done.returncode == 0, done.stderr
    assert ":dart: *ECM Triage*" in done.stdout
    assert (tmp_path / "dagster" / "dagster.yaml").exists()


def _imports(path: Path) -> set[str]:
    tree = ast.parse(path.read_text())
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
    return names


def test_the_domain_imports_nothing_from_the_shell() -> None:
    """domain/ is pure: the standard library, pandas/numpy, validation libraries for input rows
    (pydantic, email-validator) and the project's settings and domain modules; never Dagster or a
    resource."""
    allowed_third_party = {"pandas", "numpy", "pydantic", "email_validator"}
    allowed_project = {"ecm_pipeline.settings"}
    stdlib = set(sys.stdlib_module_names)
    for path in sorted((PROJECT / "ecm_pipeline" / "domain").glob("*.py")):
        for name in _imports(path):
            root = name.split(".")[0]
            ok = (root in stdlib or root in allowed_third_party or name in allowed_project
                  or name.startswith("ecm_pipeline.domain") or name == "__future__")
            assert ok, f"{path.name} imports {name}"
