"""Business settings (one versioned YAML file) and the stuck-reason catalogue, as typed objects.

Settings are not secrets: they may be read at import time. `ECM_SETTINGS` points at an
override file; `ECM_HOME` says where local state lives (default `.ecm/` in the working directory).
"""

from __future__ import annotations

import os
from functools import cache
from pathlib import Path
from typing import Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

PACKAGE_DIR = Path(__file__).resolve().parent
PROJECT_DIR = PACKAGE_DIR.parent
SQL_DIR = PROJECT_DIR / "sql"
DEFAULT_SETTINGS_FILE = PACKAGE_DIR / "settings.yaml"
CATALOGUE_FILE = PACKAGE_DIR / "stuck_reasons.yaml"
RULES_FILE = PACKAGE_DIR / "classification_rules.yaml"


class ConfigError(Exception):
    """A configuration file is missing or malformed; the message names the file and the field."""


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class SnapshotSettings(_Model):
    window_days: float = 30
    min_age_hours: float = 12
    currencies: tuple[str, ...] = ("AED", "GBP", "EUR")
    statuses: tuple[str, ...]
    actionable_sub_states: tuple[str, ...]
    never_sub_states: tuple[str, ...]
    statement_timeout_seconds: int = 120


class QualificationSettings(_Model):
    stale_uncategorized_hours: float = 720
    auto_cancel_warning_count: int = 20


class ScoringSettings(_Model):
    weights: dict[str, float]
    severity_multipliers: dict[str, float] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _weights_complete(self) -> ScoringSettings:
        expected = {"age", "amount", "severity", "rfi", "payment", "attempts"}
        if set(self.weights) != expected:
            raise ValueError(f"scoring.weights must have exactly {sorted(expected)}")
        return self


class AssignmentSettings(_Model):
    high_value_aed: float = 5000
    default_max_tickets: int = 10
    mode: Literal["single_pool", "team_first"] = "single_pool"
    roster_exclusions: tuple[str, ...] = ()


class ScheduleSettings(_Model):
    timezone: str = "Asia/Dubai"
    ticks: tuple[str, ...] = ("07:00", "14:00", "20:00")
    first_partition: str = "2026-01-01-07:00"

    @property
    def cron(self) -> str:
        hours = sorted({int(t.split(":")[0]) for t in self.ticks})
        minutes = {int(t.split(":")[1]) for t in self.ticks}
        if len(minutes) != 1:
            raise ConfigError("schedule.ticks must all use the same minute (one cron expression)")
        return f"{minutes.pop()} {','.join(str(h) for h in hours)} * * *"


class SlackSettings(_Model):
    post_max_age_hours: float = 24
    sheet_url: str = ""


class Settings(_Model):
    snapshot: SnapshotSettings
    fx_to_aed: dict[str, float]
    qualification: QualificationSettings = QualificationSettings()
    scoring: ScoringSettings
    assignment: AssignmentSettings = AssignmentSettings()
    schedule: ScheduleSettings = ScheduleSettings()
    slack: SlackSettings = SlackSettings()

    @model_validator(mode="after")
    def _fx_for_every_currency(self) -> Settings:
        missing = [c for c in self.snapshot.currencies if c not in self.fx_to_aed]
        if missing:
            raise ValueError(f"fx_to_aed has no rate for {missing}")
        return self


class Reason(_Model):
    team: str
    sla_hours: float
    severity: float = Field(ge=0, le=1)
    no_action: bool = False
    customer_impact: bool = False
    runbook: str
    action: str
    escalation: str = ""


class Catalogue(_Model):
    teams: dict[str, dict[str, str]]
    reasons: dict[str, Reason]

    @model_validator(mode="after")
    def _teams_known(self) -> Catalogue:
        unknown = {r.team for r in self.reasons.values()} - set(self.teams)
        if unknown:
            raise ValueError(f"reasons use undeclared teams {sorted(unknown)}")
        return self


def _load_yaml(path: Path) -> dict:
    try:
        data = yaml.safe_load(path.read_text())
    except FileNotFoundError as exc:
        raise ConfigError(f"{path}: file not found") from exc
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML ({exc})") from exc
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected a mapping at the top level")
    return data


def _validated(model: type[BaseModel], path: Path):
    try:
        return model.model_validate(_load_yaml(path))
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in err['loc']) or '(top)'}: {err['msg']}" for err in exc.errors()
        )
        raise ConfigError(f"{path}: {problems}") from None


def settings_path() -> Path:
    return Path(os.environ.get("ECM_SETTINGS") or DEFAULT_SETTINGS_FILE)


@cache
def _settings_at(path: Path) -> Settings:
    return _validated(Settings, path)


def load_settings(path: Path | None = None) -> Settings:
    return _settings_at(Path(path) if path else settings_path())


@cache
def load_catalogue(path: Path = CATALOGUE_FILE) -> Catalogue:
    return _validated(Catalogue, path)


def ecm_home() -> Path:
    """Where local state lives: warehouse, sheet, outbox, lake. Resolved when called."""
    return Path(os.environ.get("ECM_HOME") or ".ecm").resolve()
