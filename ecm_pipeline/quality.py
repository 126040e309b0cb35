"""Great Expectations suites (`expectations/<asset>.json`) and their evaluation.

Reading a suite's check names and severities needs only `json`, so loading the definitions never
pays for GX; GX itself is imported on first validation, in an ephemeral context with analytics and
progress bars off. A metric GX cannot compute is reported as *errored*, never as a data failure.

A suite validates many partitions at once: every frame carries a `partition_key` column (and is
indexed by it), so one validation of a whole backfill range names the partitions each expectation
failed on. An expectation about the frame itself (its columns, a column's type) holds or fails for
every partition in it.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from functools import cache
from importlib.resources.abc import Traversable
from pathlib import Path
from typing import Any

import pandas as pd

from ecm_pipeline.settings import ConfigError, package_file

PARTITION = "partition_key"
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
    path: Traversable | Path
    description: str
    frames: dict[str, tuple[str, ...]]   # frame name -> columns naming a failing row, partition first
    expectations: tuple[Expectation, ...]

    def blocking(self) -> tuple[Expectation, ...]:
        return tuple(e for e in self.expectations if e.blocking)


def _index(spec: dict | None) -> tuple[str, ...]:
    index = (spec or {}).get("index") or []
    index = [index] if isinstance(index, str) else list(index)
    return (PARTITION, *[c for c in index if c != PARTITION])


@dataclass(frozen=True)
class Outcome:
    """One expectation's verdict, ready to become an AssetCheckResult."""

    expectation: Expectation
    passed: bool
    errored: bool = False
    summary: str = ""
    metadata: dict[str, Any] = field(default_factory=dict)
    failed_partitions: tuple[str, ...] = ()


def suite_path(asset: str) -> Traversable:
    return package_file("ecm_pipeline.expectations", f"{asset}.json")


def suite_names() -> list[str]:
    return sorted(p.name.removesuffix(".json") for p in package_file("ecm_pipeline.expectations", "").iterdir()
                  if p.name.endswith(".json"))


@cache
def load_suite(path: Traversable | Path) -> Suite:
    """Parse a suite file's structure (no GX). Any problem names the file."""
    try:
        raw = json.loads(path.read_text())
        frames = {name: _index(spec) for name, spec in raw["meta"]["frames"].items()}
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
        return Suite(raw.get("name") or path.name.removesuffix(".json"), path, raw["meta"].get("description", ""),
                     frames, tuple(expectations))
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


def _outcome(expectation: Expectation, result: dict, index: tuple[str, ...], partitions: list[str]) -> Outcome:
    error = _raised(result.get("exception_info") or {})
    if error:
        return Outcome(expectation, passed=False, errored=True,
                       summary=f"check errored (GX could not evaluate it): {error}",
                       metadata={"outcome": "errored", "error": error}, failed_partitions=tuple(partitions))
    details = result.get("result") or {}
    metadata: dict[str, Any] = {"outcome": "passed" if result["success"] else "failed"}
    for key in ("observed_value", "element_count", "unexpected_count", "unexpected_percent"):
        if details.get(key) is not None:
            metadata[key] = details[key]
    rows = details.get("unexpected_index_list")
    if result["success"]:
        failed: list[str] = []
    elif rows is None:   # about the frame itself: it fails for every partition in it
        failed = list(partitions)
    else:
        failed = sorted({str(row[PARTITION]) for row in rows if isinstance(row, dict)})
    named = index[1:]
    failing = [" ".join(str(row.get(c)) for c in named) for row in rows or [] if isinstance(row, dict)] if named else []
    column = expectation.config["kwargs"].get("column")
    if not named and rows and column:   # a profile row per partition: the figure that failed
        metadata["observed_value"] = rows[0].get(column)
    if failing:
        metadata["failing_ids"] = failing[:FAILING_IDS_SHOWN]
    if details.get("partial_unexpected_list"):
        metadata["unexpected_values"] = [str(v) for v in details["partial_unexpected_list"][:FAILING_IDS_SHOWN]]
    if failed and len(partitions) > 1:
        metadata["failed_partitions"] = failed
    parts = []
    if "unexpected_count" in metadata:
        parts.append(f"{metadata['unexpected_count']} of {metadata.get('element_count', '?')} rows fail")
    if "observed_value" in metadata:
        parts.append(f"observed {metadata['observed_value']}")
    if failing:
        parts.append("e.g. " + ", ".join(failing[:5]))
    if failed and len(partitions) > 1:
        parts.append(f"in {len(failed)} of {len(partitions)} partitions ({', '.join(failed[:3])}"
                     f"{', ...' if len(failed) > 3 else ''})")
    return Outcome(expectation, passed=bool(result["success"]), summary="; ".join(parts), metadata=_plain(metadata),
                   failed_partitions=tuple(failed))


def _plain(value: dict) -> dict:
    """JSON-plain values (GX can hand back numpy scalars and timestamps, which metadata rejects)."""
    return json.loads(json.dumps(value, default=lambda o: o.item() if hasattr(o, "item") else str(o)))


def validate(suite: Suite, frames: dict[str, pd.DataFrame], parameters: dict[str, Any],
             partitions: list[str]) -> list[Outcome]:
    """Validate each frame against its part of the suite, for all `partitions` at once (every frame
    has a `partition_key` column). Results come back in suite order."""
    _, batch_definition = _context()
    outcomes: dict[str, Outcome] = {}
    for frame_name, index in suite.frames.items():
        members = [e for e in suite.expectations if e.frame == frame_name]
        if not members:
            continue
        try:
            result_format = {"result_format": "COMPLETE", "partial_unexpected_count": FAILING_IDS_SHOWN,
                             "unexpected_index_column_names": list(index)}
            batch = batch_definition.get_batch(batch_parameters={"dataframe": frames[frame_name]})
            validation = batch.validate(gx_suite(suite, frame_name), expectation_parameters=parameters,
                                        result_format=result_format)
            by_name = {r.expectation_config.meta["check_name"]: r.to_json_dict() for r in validation.results}
            for e in members:
                outcomes[e.check_name] = _outcome(e, by_name[e.check_name], index, partitions)
        except Exception as exc:  # a GX failure is "errored", never "data failed"
            message = f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"
            for e in members:
                outcomes[e.check_name] = Outcome(e, passed=False, errored=True,
                                                 summary=f"check errored (GX could not evaluate it): {message}",
                                                 metadata={"outcome": "errored", "error": message},
                                                 failed_partitions=tuple(partitions))
    return [outcomes[e.check_name] for e in suite.expectations]
