"""Business settings (one versioned YAML file) and the stuck-reason catalogue, as typed objects.

Settings are not secrets: they may be read at import time. The packaged `settings.yaml` holds the
defaults; `$ECM_HOME/settings.yaml` (written by `ecm demo`) and then the file `$ECM_SETTINGS` names
are deep-merged over them, so an override file only needs the keys it changes. `ECM_HOME` says
where local state lives (default `.ecm/` in the working directory).
"""

from __future__ import annotations

import os
from functools import cache
from importlib import resources
from importlib.resources.abc import Traversable
from pathlib import Path
from typing import Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

PACKAGE = resources.files("ecm_pipeline")
DEFAULT_SETTINGS_FILE = PACKAGE / "settings.yaml"
CATALOGUE_FILE = PACKAGE / "stuck_reasons.yaml"
RULES_FILE = PACKAGE / "classification_rules.yaml"
RUNBOOKS_FILE = PACKAGE / "runbooks.yaml"


class ConfigError(Exception):
    """A configuration file is missing or malformed; the message names the file and the field."""


def package_file(package: str, name: str) -> Traversable:
    """A data file shipped in the package (`ecm_pipeline.sql`, `ecm_pipeline.expectations`)."""
    return resources.files(package) / name


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class SnapshotSettings(_Model):
    window_days: float = 30
    min_age_hours: float = 12
    currencies: tuple[str, ...] = ("AED", "GBP", "EUR")
    statuses: tuple[str, ...]
    actionable_sub_states: tuple[str, ...]
    never_sub_states: tuple[str, ...]
    statement_timeout_seconds: float = Field(default=120, gt=0)


class CategorySettings(_Model):
    """Hours-stuck limits: above `critical` an order is critical, and so on."""

    critical: float = 36
    action_required: float = 24
    warning: float = 12


class PartnerSettings(_Model):
    bulk_if_receive_above: float = 50000
    bulk_above_threshold: tuple[str, ...] = ()
    bulk: tuple[str, ...] = ()
    rda: tuple[str, ...] = ()


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
    default_max_tickets: int = Field(default=10, ge=0)
    max_tickets_limit: int = Field(default=200, ge=0)
    mode: Literal["single_pool", "team_first"] = "single_pool"
    roster_exclusions: tuple[str, ...] = ()


class GateSettings(_Model):
    backlog_stop: int = 2000
    backlog_red_flag: int = 1000
    backlog_expected: tuple[int, int] = (200, 600)
    all_aed_min_orders: int = 50
    gbp_eur_share_max: float = 0.8
    aed_share_expected: tuple[float, float] = (0.5, 0.7)
    gbp_share_expected: tuple[float, float] = (0.25, 0.4)
    eur_share_expected: tuple[float, float] = (0.01, 0.1)


class ScheduleSettings(_Model):
    timezone: str = "Asia/Dubai"
    ticks: tuple[str, ...] = ("07:00", "14:00", "20:00")
    go_live: str = "2026-11-01-07:00"
    grace_minutes: float = Field(default=45, ge=0)   # a tick counts as missed once this long has passed

    @property
    def cron(self) -> str:
        hours = sorted({int(t.split(":")[0]) for t in self.ticks})
        minutes = {int(t.split(":")[1]) for t in self.ticks}
        if len(minutes) != 1:
            raise ConfigError("schedule.ticks must all use the same minute (one cron expression)")
        return f"{minutes.pop()} {','.join(str(h) for h in hours)} * * *"

    @property
    def deadline_cron(self) -> str:
        """The cron of each tick plus the grace: when a tick without a successful run is late."""
        minute = int(self.ticks[0].split(":")[1]) + round(self.grace_minutes)
        hours = sorted({(int(t.split(":")[0]) + minute // 60) % 24 for t in self.ticks})
        return f"{minute % 60} {','.join(str(h) for h in hours)} * * *"


class SheetSettings(_Model):
    settle_seconds: float = Field(default=2.0, ge=0)
    lock_timeout_seconds: float = Field(default=300, gt=0)


class SlackSettings(_Model):
    sheet_url: str = ""
    retries: int = Field(default=4, ge=0)
    retry_delay_seconds: float = Field(default=30, ge=0)


class HistorySettings(_Model):
    chart_days: float = Field(default=90, gt=0)


class ProgressSettings(_Model):
    warning_share: float = Field(default=0.5, gt=0, lt=1)     # WARNING above this share of the SLA
    critical_share: float = Field(default=0.75, gt=0, lt=1)   # CRITICAL above this share; BREACHED above 1
    breach_alert_min: int = Field(default=3, ge=1)            # the SLA breach alert needs this many breaches
    breach_alert_top: int = Field(default=10, ge=1)           # breaches listed in it, longest overdue first
    capacity_warning_share: float = Field(default=0.8, gt=0, le=1)   # warn above this share of Max Tickets

    @model_validator(mode="after")
    def _bands_in_order(self) -> ProgressSettings:
        if self.warning_share >= self.critical_share:
            raise ValueError("progress.warning_share must be below progress.critical_share")
        return self


class RetentionSettings(_Model):
    closed_days: float = Field(default=30, ge=1)


class ReportSettings(_Model):
    daily_tick: str | None = "07:00"     # None: no daily reports
    inflow_days: int = Field(default=7, ge=2)
    inflow_spike_ratio: float = Field(default=2.0, gt=1)
    pattern_min_orders: int = Field(default=3, ge=1)
    pattern_top: int = Field(default=10, ge=1, le=25)
    novel_min_orders: int = Field(default=5, ge=1)
    pattern_old_hours: float = Field(default=72, gt=0)
    spike_days: int = Field(default=14, ge=2)
    spike_min_points: int = Field(default=7, ge=2)
    spike_z: float = Field(default=3.5, gt=0)


class AlertSettings(_Model):
    dagster_ui_url: str = Field(default="http://127.0.0.1:3000", min_length=1)


class Settings(_Model):
    snapshot: SnapshotSettings
    categories: CategorySettings = CategorySettings()
    fx_to_aed: dict[str, float]
    partners: PartnerSettings = PartnerSettings()
    qualification: QualificationSettings = QualificationSettings()
    scoring: ScoringSettings
    assignment: AssignmentSettings = AssignmentSettings()
    gates: GateSettings = GateSettings()
    schedule: ScheduleSettings = ScheduleSettings()
    sheet: SheetSettings = SheetSettings()
    slack: SlackSettings = SlackSettings()
    history: HistorySettings = HistorySettings()
    progress: ProgressSettings = ProgressSettings()
    retention: RetentionSettings = RetentionSettings()
    reports: ReportSettings = ReportSettings()
    alerts: AlertSettings = AlertSettings()

    @model_validator(mode="after")
    def _daily_tick_is_a_tick(self) -> Settings:
        if self.reports.daily_tick is not None and self.reports.daily_tick not in self.schedule.ticks:
            raise ValueError(f"reports.daily_tick {self.reports.daily_tick!r} is not one of schedule.ticks "
                             f"{list(self.schedule.ticks)}")
        return self

    @model_validator(mode="after")
    def _fx_for_every_currency(self) -> Settings:
        missing = [c for c in self.snapshot.currencies if c not in self.fx_to_aed]
        if missing:
            raise ValueError(f"fx_to_aed has no rate for {missing}")
        return self


class Reason(_Model):
    team: str
    family: str
    sla_hours: float = Field(gt=0)
    severity: float = Field(ge=0, le=1)
    no_action: bool = False
    customer_impact: bool = False
    runbook: str
    action: str
    escalation: str = ""


class Runbook(_Model):
    title: str
    steps: tuple[str, ...] = Field(min_length=1)
    escalate_when: str


class Runbooks(_Model):
    runbooks: dict[str, Runbook]


class Catalogue(_Model):
    teams: dict[str, dict[str, str]]
    reasons: dict[str, Reason]

    @model_validator(mode="after")
    def _teams_known(self) -> Catalogue:
        unknown = {r.team for r in self.reasons.values()} - set(self.teams)
        if unknown:
            raise ValueError(f"reasons use undeclared teams {sorted(unknown)}")
        return self


def _load_yaml(path: Traversable | Path) -> dict:
    try:
        data = yaml.safe_load(path.read_text())
    except FileNotFoundError as exc:
        raise ConfigError(f"{path}: file not found") from exc
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML ({exc})") from exc
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected a mapping at the top level")
    return data


def _merged(base: dict, overlay: dict) -> dict:
    out = dict(base)
    for key, value in overlay.items():
        out[key] = _merged(out[key], value) if isinstance(value, dict) and isinstance(out.get(key), dict) else value
    return out


def _problems(exc: ValidationError) -> str:
    return "; ".join(f"{'.'.join(str(p) for p in err['loc']) or '(top)'}: {err['msg']}" for err in exc.errors())


def _validated(model: type[BaseModel], path: Traversable | Path):
    try:
        return model.model_validate(_load_yaml(path))
    except ValidationError as exc:
        raise ConfigError(f"{path}: {_problems(exc)}") from None


def ecm_home() -> Path:
    """Where local state lives: warehouse, sheet, outbox, lake. Resolved when called."""
    return Path(os.environ.get("ECM_HOME") or ".ecm").resolve()


def settings_overlays() -> tuple[Path, ...]:
    """The override files in force, in the order they apply."""
    local = ecm_home() / "settings.yaml"
    explicit = os.environ.get("ECM_SETTINGS")
    return tuple(p for p in (local if local.exists() else None, Path(explicit) if explicit else None) if p)


@cache
def _settings_from(overlays: tuple[Path, ...]) -> Settings:
    data = _load_yaml(DEFAULT_SETTINGS_FILE)
    for path in overlays:
        data = _merged(data, _load_yaml(path))
    try:
        return Settings.model_validate(data)
    except ValidationError as exc:
        where = ", ".join(str(p) for p in overlays) or str(DEFAULT_SETTINGS_FILE)
        raise ConfigError(f"{where}: {_problems(exc)}") from None


def load_settings() -> Settings:
    return _settings_from(settings_overlays())


def load_rule_table(path: Traversable | Path = RULES_FILE) -> list[dict]:
    """The classification rules as written in their file (the domain parses and checks them)."""
    rules = _load_yaml(path).get("rules")
    if not isinstance(rules, list):
        raise ConfigError(f"{path}: expected a list under `rules`")
    return rules


@cache
def load_catalogue(path: Traversable | Path = CATALOGUE_FILE) -> Catalogue:
    return _validated(Catalogue, path)


@cache
def load_runbooks(path: Traversable | Path = RUNBOOKS_FILE) -> dict[str, Runbook]:
    """The runbooks by file name; every runbook the catalogue names must be there."""
    runbooks = _validated(Runbooks, path).runbooks
    missing = sorted({r.runbook for r in load_catalogue().reasons.values()} - set(runbooks))
    if missing:
        raise ConfigError(f"{path}: no runbook for {', '.join(missing)} (named in {CATALOGUE_FILE})")
    return runbooks
