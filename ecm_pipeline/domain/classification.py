"""stuck_reason classification: the ordered first-match rule table (SPEC §5), vectorised.

The rules are data (`classification_rules.yaml`); this module only knows how to evaluate the
condition vocabulary described at the top of that file.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from ecm_pipeline.settings import RULES_FILE, Catalogue, ConfigError, load_catalogue, load_rule_table

UNCATEGORIZED = "uncategorized"
OPEN_RFI_STATES = ("REQUESTED", "REJECTED", "SUBMITTED", "SENT_TO_PROVIDER", "RE_OPEN")
CURRENCY_SCOPES = {"AED": ("AED",), "GBP_EUR": ("GBP", "EUR"), "any": None}
FLAG_COLUMNS = ("has_falcon", "has_open_rfi", "has_trm", "has_completed_payment")
VALUE_COLUMNS = (
    "status", "sub_state", "acquirer", "lulu_status", "lulu_client", "falcon_status", "payout_status",
    "payout_partner", "partner_class", "checkout_status", "manual_payment_status", "rda_status",
    "time_bucket",
)


@dataclass(frozen=True)
class Rule:
    id: str
    currencies: tuple[str, ...] | None
    when: dict[str, Any]
    reason: str
    below_hours: float | None = None
    reason_below: str | None = None


def _parse_rule(raw: dict, path: Path, catalogue: Catalogue) -> Rule:
    rid = raw.get("id", "?")
    where = f"{path}: rule {rid}"
    scope = raw.get("currency")
    if scope not in CURRENCY_SCOPES:
        raise ConfigError(f"{where}: currency must be one of {sorted(CURRENCY_SCOPES)}, got {scope!r}")
    when = raw.get("when") or {}
    for column, spec in when.items():
        if column in FLAG_COLUMNS:
            if not isinstance(spec, bool):
                raise ConfigError(f"{where}: {column} takes true or false")
        elif column not in VALUE_COLUMNS:
            raise ConfigError(f"{where}: unknown column {column!r}")
        elif isinstance(spec, dict) and not (set(spec) <= {"not", "missing"} and len(spec) == 1):
            raise ConfigError(f"{where}: {column}: a mapping must be {{not: ...}} or {{missing: ...}}")
    reasons = [raw.get("reason")]
    below = raw.get("reason_below_hours")
    if below:
        reasons.append(below.get("reason"))
    for reason in reasons:
        if reason not in catalogue.reasons:
            raise ConfigError(f"{where}: reason {reason!r} is not in the stuck-reason catalogue")
    return Rule(
        id=str(rid),
        currencies=CURRENCY_SCOPES[scope],
        when=dict(when),
        reason=raw["reason"],
        below_hours=float(below["hours"]) if below else None,
        reason_below=below["reason"] if below else None,
    )


@cache
def load_rules(path: Path = RULES_FILE) -> tuple[Rule, ...]:
    rules = tuple(_parse_rule(r, path, load_catalogue()) for r in load_rule_table(path))
    ids = [r.id for r in rules]
    duplicates = sorted({i for i in ids if ids.count(i) > 1})
    if duplicates:
        raise ConfigError(f"{path}: duplicate rule ids {duplicates}")
    return rules


def _as_bool(values: Any) -> np.ndarray:
    return np.asarray(pd.array(values, dtype="boolean").fillna(False), dtype=bool)


def derive_flags(snapshot: pd.DataFrame) -> pd.DataFrame:
    """Add the booleans the rules read: a Falcon transaction exists; the latest RFI is open."""
    out = snapshot.copy()
    out["has_falcon"] = out["ftv_transaction_id"].notna()
    out["has_open_rfi"] = out["rfi_status"].isin(OPEN_RFI_STATES)
    for flag in ("has_trm", "has_completed_payment"):
        out[flag] = _as_bool(out[flag])
    return out


class _Columns:
    """The frame's columns as the rules ask about them, each worked out once however many rules
    read it: a text column is factorized once, and a condition on it looks up its few distinct
    values instead of comparing a million strings again for every rule."""

    def __init__(self, frame: pd.DataFrame) -> None:
        self.frame = frame
        self._codes: dict[str, tuple[np.ndarray, pd.Index]] = {}
        self._flags: dict[str, np.ndarray] = {}

    def _factorized(self, column: str) -> tuple[np.ndarray, pd.Index]:
        """Each row's code (-1: missing) and the distinct values, once per column."""
        if column not in self._codes:
            codes, uniques = pd.factorize(self.frame[column], use_na_sentinel=True)
            self._codes[column] = (codes, pd.Index(uniques))
        return self._codes[column]

    def isin(self, column: str, values: list | tuple) -> np.ndarray:
        codes, uniques = self._factorized(column)
        table = np.zeros(len(uniques) + 1, dtype=bool)   # the last slot: a missing value (code -1)
        table[:-1] = uniques.isin(values)
        return table[codes]

    def flag(self, column: str) -> np.ndarray:
        if column not in self._flags:
            self._flags[column] = _as_bool(self.frame[column])
        return self._flags[column]

    def missing(self, column: str) -> np.ndarray:
        return self._factorized(column)[0] == -1


def _condition(columns: _Columns, column: str, spec: Any) -> np.ndarray:
    if isinstance(spec, bool):
        return columns.flag(column) == spec
    if isinstance(spec, dict) and "missing" in spec:
        return columns.missing(column) == bool(spec["missing"])
    if isinstance(spec, dict):  # {not: ...}: a missing value is "different" (fix 2)
        excluded = spec["not"] if isinstance(spec["not"], list) else [spec["not"]]
        return ~columns.isin(column, excluded)
    return columns.isin(column, spec if isinstance(spec, list) else [spec])


def rule_masks(frame: pd.DataFrame, rules: tuple[Rule, ...]) -> list[np.ndarray]:
    columns = _Columns(frame)
    masks = []
    for rule in rules:
        mask = np.ones(len(frame), dtype=bool)
        if rule.currencies is not None:
            mask &= columns.isin("currency", rule.currencies)
        for column, spec in rule.when.items():
            mask &= _condition(columns, column, spec)
        masks.append(mask)
    return masks


def classify(snapshot: pd.DataFrame, rules: tuple[Rule, ...] | None = None) -> pd.DataFrame:
    """Return the snapshot with `rule_id` and `stuck_reason` (first matching rule wins)."""
    rules = rules or load_rules()
    frame = derive_flags(snapshot)
    masks = rule_masks(frame, rules)
    # The first matching rule of each order (len(rules): none), then its id and reason by lookup.
    first = np.full(len(frame), len(rules), dtype=np.int16)
    for index in range(len(rules) - 1, -1, -1):
        first[masks[index]] = index
    # Both columns are taken by code from a text array of their few distinct values: building a
    # million-row text column from Python strings costs ten times as much.
    ids = pd.array([r.id for r in rules] + [None], dtype="str")   # NaN where none matched
    names = list(dict.fromkeys([r.reason for r in rules] + [r.reason_below for r in rules if r.reason_below]
                               + [UNCATEGORIZED]))
    reason = np.array([names.index(r.reason) for r in rules] + [names.index(UNCATEGORIZED)], dtype=np.int16)[first]
    hours = frame["hours_stuck"].to_numpy(dtype=float)
    for index, rule in enumerate(rules):
        if rule.below_hours is not None:
            reason[(first == index) & (hours < rule.below_hours)] = names.index(rule.reason_below)
    frame["rule_id"] = pd.Series(ids.take(first), index=frame.index)
    frame["stuck_reason"] = pd.Series(pd.array(names, dtype="str").take(reason), index=frame.index)
    return frame


def attach_catalogue(classified: pd.DataFrame, catalogue: Catalogue | None = None) -> pd.DataFrame:
    """Team, SLA, severity, monitor-only flag, runbook and one-line action from the reason's entry."""
    catalogue = catalogue or load_catalogue()
    table = pd.DataFrame(
        [
            {"stuck_reason": name, "team": r.team, "sla_hours": r.sla_hours, "severity": r.severity,
             "no_action": r.no_action, "runbook": r.runbook, "action": r.action}
            for name, r in catalogue.reasons.items()
        ]
    )
    # A lookup by reason (what a left merge gives), added beside the order columns rather than
    # copying all of them as a merge would.
    codes, reasons = pd.factorize(classified["stuck_reason"])   # a few distinct reasons, looked up once
    entries = table.set_index("stuck_reason").reindex(reasons)
    return classified.assign(**{column: pd.Series(entries[column].array.take(codes, allow_fill=True),
                                                  index=classified.index) for column in entries.columns})
