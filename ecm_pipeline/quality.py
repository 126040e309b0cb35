"""Great Expectations suites (`expectations/<asset>.json`) and their evaluation.

Reading a suite's check names and severities needs only `json`, so loading the definitions never
pays for GX; GX itself is imported on first validation, in an ephemeral context with analytics and
progress bars off. A metric GX cannot compute is reported as *errored*, never as a data failure.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Any

import pandas as pd

from ecm_pipeline.settings import PROJECT_DIR, ConfigError

EXPECTATIONS_DIR = PROJECT_DIR / "expectations"
SEVERITIES = {"critical": "ERROR", "warning": "WARN", "info": "WARN"}
FAILING_IDS_SHOWN = 20


@dataclass(frozen=True)
class Expectation:
    check_name: str
    frame: str
    severity: str          # ERROR (blocking) or WARN
    description: str
    config: dict           # the GX expectation configuration, as in the file

    @property
    def blocking(self) -> bool:
        return self.severity == "ERROR"


@dataclass(frozen=True)
class Suite:
    asset: str
    path: Path
    description: str
    frames: dict[str, str | None]   # frame name -> index column naming the failing rows
    expectations: tuple[Expectation, ...]


@dataclass(frozen=True)
class Outcome:
    """One expectation's verdict, ready to become an AssetCheckResult."""

    expectation: Expectation
    passed: bool
    errored: bool = False
    summary: str = ""
    metadata: dict[str, Any] = field(default_factory=dict)


def suite_path(asset: str) -> Path:
    return EXPECTATIONS_DIR / f"{asset}.json"


@cache
def load_suite(path: Path) -> Suite:
    """Parse a suite file's structure (no GX). Any problem names the file."""
    try:
        raw = json.loads(path.read_text())
        frames = {name: (spec or {}).get("index") for name, spec in raw["meta"]["frames"].items()}
        expectations = []
        for i, item in enumerate(raw["expectations"]):
            meta = item.get("meta") or {}
            where = f"expectation {i + 1} ({meta.get('check_name', item.get('type', '?'))})"
            if "id" in item:
                raise ConfigError(f"{where}: suites are kept without ids")
            for key in ("check_name", "frame", "description"):
                if not meta.get(key):
                    raise ConfigError(f"{where}: meta.{key} is required")
            if meta["frame"] not in frames:
                raise ConfigError(f"{where}: frame {meta['frame']!r} is not declared in meta.frames")
            severity = item.get("severity", "critical")
            if severity not in SEVERITIES:
                raise ConfigError(f"{where}: severity must be one of {sorted(SEVERITIES)}")
            if not isinstance(item.get("type"), str) or not isinstance(item.get("kwargs"), dict):
                raise ConfigError(f"{where}: needs a 'type' and a 'kwargs' mapping")
            expectations.append(Expectation(meta["check_name"], meta["frame"], SEVERITIES[severity],
                                            meta["description"], item))
        names = [e.check_name for e in expectations]
        duplicates = sorted({n for n in names if names.count(n) > 1})
        if duplicates:
            raise ConfigError(f"duplicate check names {duplicates}")
        return Suite(raw.get("name") or path.stem, path, raw["meta"].get("description", ""), frames,
                     tuple(expectations))
    except ConfigError as exc:
        raise ConfigError(f"{path}: {exc}") from None
    except FileNotFoundError:
        raise ConfigError(f"{path}: suite file not found") from None
    except (json.JSONDecodeError, KeyError, TypeError, AttributeError) as exc:
        raise ConfigError(f"{path}: not a valid suite ({type(exc).__name__}: {exc})") from None


@cache
def _context():
    os.environ.setdefault("GX_ANALYTICS_ENABLED", "False")
    import great_expectations as gx
    from great_expectations.data_context.types.base import (
        DataContextConfig,
        InMemoryStoreBackendDefaults,
        ProgressBarsConfig,
    )

    config = DataContextConfig(
        store_backend_defaults=InMemoryStoreBackendDefaults(init_temp_docs_sites=False),
        analytics_enabled=False,
        progress_bars=ProgressBarsConfig(globally=False),
    )
    context = gx.get_context(mode="ephemeral", project_config=config)
    batches = context.data_sources.add_pandas("ecm").add_dataframe_asset("frame")
    return gx, batches.add_batch_definition_whole_dataframe("whole")


def gx_suite(suite: Suite, frame: str | None = None):
    """The GX ExpectationSuite for one frame of a suite (all frames when None)."""
    gx, _ = _context()
    from great_expectations.expectations.expectation_configuration import ExpectationConfiguration

    expectations = []
    for e in suite.expectations:
        if frame is not None and e.frame != frame:
            continue
        # Built one by one: given dicts, ExpectationSuite logs a bad one and silently drops it.
        try:
            expectations.append(ExpectationConfiguration(**e.config).to_domain_obj())
        except Exception as exc:  # GX raises several types for a bad expectation
            message = str(exc).splitlines()[0] if str(exc) else ""
            raise ConfigError(f"{suite.path}: {e.check_name}: {type(exc).__name__}: {message}") from None
    return gx.ExpectationSuite(name=f"{suite.asset}.{frame or 'all'}", expectations=expectations)


def _raised(exception_info: dict) -> str | None:
    """GX reports metric errors in two shapes; return the message if either says it raised."""
    if exception_info.get("raised_exception"):
        return exception_info.get("exception_message") or "GX raised an exception"
    for value in exception_info.values():
        if isinstance(value, dict) and value.get("raised_exception"):
            return value.get("exception_message") or "GX raised an exception"
    return None


def _outcome(expectation: Expectation, result: dict, index: str | None) -> Outcome:
    error = _raised(result.get("exception_info") or {})
    if error:
        return Outcome(expectation, passed=False, errored=True,
                       summary=f"check errored (GX could not evaluate it): {error}",
                       metadata={"outcome": "errored", "error": error})
    details = result.get("result") or {}
    metadata: dict[str, Any] = {"outcome": "passed" if result["success"] else "failed"}
    for key in ("observed_value", "element_count", "unexpected_count", "unexpected_percent"):
        if details.get(key) is not None:
            metadata[key] = details[key]
    failing = [
        row.get(index) if isinstance(row, dict) else row
        for row in details.get("partial_unexpected_index_list") or []
    ] if index else []
    if failing:
        metadata["failing_ids"] = failing[:FAILING_IDS_SHOWN]
    if details.get("partial_unexpected_list"):
        metadata["unexpected_values"] = [str(v) for v in details["partial_unexpected_list"][:FAILING_IDS_SHOWN]]
    parts = []
    if "unexpected_count" in metadata:
        parts.append(f"{metadata['unexpected_count']} of {metadata.get('element_count', '?')} rows fail")
    if "observed_value" in metadata:
        parts.append(f"observed {metadata['observed_value']}")
    if failing:
        parts.append("e.g. " + ", ".join(str(f) for f in failing[:5]))
    return Outcome(expectation, passed=bool(result["success"]), summary="; ".join(parts), metadata=_plain(metadata))


def _plain(value: dict) -> dict:
    """JSON-plain values (GX can hand back numpy scalars and timestamps, which metadata rejects)."""
    return json.loads(json.dumps(value, default=lambda o: o.item() if hasattr(o, "item") else str(o)))


def validate(suite: Suite, frames: dict[str, pd.DataFrame], parameters: dict[str, Any]) -> list[Outcome]:
    """Validate each frame against its part of the suite. Results come back in suite order."""
    _, batch_definition = _context()
    outcomes: dict[str, Outcome] = {}
    for frame_name, index in suite.frames.items():
        members = [e for e in suite.expectations if e.frame == frame_name]
        if not members:
            continue
        try:
            # GX takes the dict form only with index columns; without, it wants the plain name.
            result_format: str | dict[str, Any] = "SUMMARY"
            if index:
                result_format = {"result_format": "SUMMARY", "partial_unexpected_count": FAILING_IDS_SHOWN,
                                 "unexpected_index_column_names": [index]}
            batch = batch_definition.get_batch(batch_parameters={"dataframe": frames[frame_name]})
            validation = batch.validate(gx_suite(suite, frame_name), expectation_parameters=parameters,
                                        result_format=result_format)
            by_name = {r.expectation_config.meta["check_name"]: r.to_json_dict() for r in validation.results}
            for e in members:
                outcomes[e.check_name] = _outcome(e, by_name[e.check_name], index)
        except Exception as exc:  # a GX failure is "errored", never "data failed"
            message = f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"
            for e in members:
                outcomes[e.check_name] = Outcome(e, passed=False, errored=True,
                                                 summary=f"check errored (GX could not evaluate it): {message}",
                                                 metadata={"outcome": "errored", "error": message})
    return [outcomes[e.check_name] for e in suite.expectations]
