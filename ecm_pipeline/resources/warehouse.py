"""Read-only warehouse access. Local default: the DuckDB file `$ECM_HOME/warehouse.duckdb`;
`ECM_WAREHOUSE_URL` points at any SQLAlchemy URL instead."""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import dagster as dg
import pandas as pd
import sqlalchemy as sa
from pydantic import PrivateAttr

from ecm_pipeline.settings import ecm_home

_COMMENTS = re.compile(r"--[^\n]*|/\*.*?\*/", re.DOTALL)
_STRINGS = re.compile(r"'(?:[^']|'')*'")


class WarehouseError(Exception):
    """The warehouse cannot be reached or refused a query; the message says what to do."""


class UnsafeQueryError(WarehouseError):
    """A statement other than one SELECT/WITH was about to be sent to the read-only warehouse."""


def assert_read_only_query(sql: str) -> None:
    """Refuse anything but a single SELECT/WITH statement, before it reaches the server."""
    code = _STRINGS.sub("''", _COMMENTS.sub(" ", sql)).strip().rstrip(";").strip()
    if ";" in code:
        raise UnsafeQueryError("refused: more than one SQL statement")
    first = code.split(None, 1)[0].upper() if code else ""
    if first not in {"SELECT", "WITH"}:
        raise UnsafeQueryError(f"refused: only SELECT/WITH queries may run on the warehouse (got {first or 'nothing'})")


def default_warehouse_path() -> Path:
    return ecm_home() / "warehouse.duckdb"


class WarehouseResource(dg.ConfigurableResource):
    """Runs bound, set-based SELECTs against the warehouse and returns DataFrames."""

    url: str = ""

    _engine: sa.Engine | None = PrivateAttr(default=None)

    def resolved_url(self) -> str:
        return self.url or f"duckdb:///{default_warehouse_path()}"

    def describe(self) -> str:
        """Where the warehouse is, without credentials."""
        return sa.engine.make_url(self.resolved_url()).render_as_string(hide_password=True)

    def _get_engine(self) -> sa.Engine:
        if self._engine is None:
            url = sa.engine.make_url(self.resolved_url())
            connect_args: dict[str, Any] = {}
            if url.drivername.startswith("duckdb"):
                path = Path(url.database or "")
                if not url.database or url.database == ":memory:" or not path.exists():
                    raise WarehouseError(
                        f"no warehouse at {path}: run `ecm demo` to generate the demo warehouse, "
                        "or set ECM_WAREHOUSE_URL"
                    )
                connect_args = {"read_only": True}
            self._engine = sa.create_engine(url, connect_args=connect_args, poolclass=sa.pool.NullPool)
        return self._engine

    def query(self, sql: str, params: Mapping[str, Any] | None = None) -> pd.DataFrame:
        assert_read_only_query(sql)
        params = dict(params or {})
        statement = sa.text(sql)
        lists = [k for k, v in params.items() if isinstance(v, list | tuple)]
        if lists:
            statement = statement.bindparams(*(sa.bindparam(k, expanding=True) for k in lists))
        try:
            with self._get_engine().connect() as conn:
                return pd.read_sql(statement, conn, params=params)
        except sa.exc.DBAPIError as exc:
            raise WarehouseError(f"warehouse query failed: {exc.orig}") from None

    def tables(self, names: Sequence[str]) -> set[str]:
        """Which of these tables exist (information_schema works on DuckDB, PostgreSQL, Redshift)."""
        found = self.query(
            "SELECT table_name FROM information_schema.tables WHERE table_name IN :names",
            {"names": list(names)},
        )
        return set(found["table_name"].str.lower())
