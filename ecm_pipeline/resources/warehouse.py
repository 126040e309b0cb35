"""Read-only warehouse access. Local default: the DuckDB file `$ECM_HOME/warehouse.duckdb`.
Production: Redshift through sqlalchemy-redshift (`redshift+psycopg2`) from the REDSHIFT_*
variables, or any SQLAlchemy URL in ECM_WAREHOUSE_URL.

Three lines of defence keep it read-only: a guard that refuses anything but one SELECT/WITH
statement before it is sent, read-only transactions (`BEGIN READ ONLY` on PostgreSQL/Redshift, a
read-only file handle on DuckDB), and the SELECT-only database user production should use.
"""

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


def _is_postgres_family(url: sa.URL) -> bool:
    return url.get_backend_name() in {"redshift", "postgresql"}


class WarehouseResource(dg.ConfigurableResource):
    """Runs bound, set-based SELECTs against the warehouse and returns DataFrames."""

    url: str = ""
    host: str = ""
    port: int = 5439
    user: str = ""
    password: str = ""
    database: str = ""
    statement_timeout_seconds: float = 120
    connect_timeout_seconds: int = 10

    _engine: sa.Engine | None = PrivateAttr(default=None)

    def resolved_url(self) -> sa.URL:
        if self.url:
            return sa.engine.make_url(self.url)
        if self.host:
            return sa.URL.create("redshift+psycopg2", username=self.user, password=self.password or None,
                                 host=self.host, port=self.port, database=self.database)
        return sa.engine.make_url(f"duckdb:///{default_warehouse_path()}")

    def describe(self) -> str:
        """Where the warehouse is, without credentials."""
        return self.resolved_url().render_as_string(hide_password=True)

    def _where(self) -> str:
        url = self.resolved_url()
        return f"{url.host}:{url.port}" if url.host else self.describe()

    def _get_engine(self) -> sa.Engine:
        if self._engine is None:
            url = self.resolved_url()
            connect_args: dict[str, Any] = {}
            if url.get_backend_name() == "duckdb":
                path = Path(url.database or "")
                if not url.database or url.database == ":memory:" or not path.exists():
                    raise WarehouseError(
                        f"no warehouse at {path}: run `ecm demo` to generate the demo warehouse, "
                        "or set ECM_WAREHOUSE_URL"
                    )
                connect_args = {"read_only": True}
            elif _is_postgres_family(url):
                connect_args = {"connect_timeout": self.connect_timeout_seconds, "application_name": "ecm-pipeline"}
            engine = sa.create_engine(url, connect_args=connect_args, poolclass=sa.pool.NullPool)
            if _is_postgres_family(url):
                timeout_ms = max(1, int(self.statement_timeout_seconds * 1000))

                @sa.event.listens_for(engine, "connect")
                def _session_setup(dbapi_connection, _record) -> None:
                    # Integer milliseconds: Redshift rejects interval strings such as '120s'.
                    with dbapi_connection.cursor() as cursor:
                        cursor.execute(f"SET statement_timeout TO {timeout_ms}")
                    dbapi_connection.commit()

            self._engine = engine
        return self._engine

    def _explain(self, exc: sa.exc.DBAPIError) -> str:
        """A clear, secret-free reason for a failed warehouse call."""
        reason = str(exc.orig).strip().splitlines()[0] if str(exc.orig).strip() else type(exc.orig).__name__
        lowered = reason.lower()
        if "statement timeout" in lowered or "canceling statement" in lowered:
            return f"the warehouse query exceeded the statement timeout of {self.statement_timeout_seconds:g} s"
        if "password authentication failed" in lowered or ("role" in lowered and "does not exist" in lowered):
            user = self.resolved_url().username
            return f"the warehouse at {self._where()} refused the credentials of user {user!r}: {reason}"
        if any(s in lowered for s in ("could not connect", "connection refused", "could not translate host",
                                      "timeout expired", "no route to host", "server closed the connection")):
            return f"cannot reach the warehouse at {self._where()}: {reason}"
        return f"warehouse query failed: {reason}"

    def query(self, sql: str, params: Mapping[str, Any] | None = None) -> pd.DataFrame:
        assert_read_only_query(sql)
        params = dict(params or {})
        statement = sa.text(sql)
        lists = [k for k, v in params.items() if isinstance(v, list | tuple)]
        if lists:
            statement = statement.bindparams(*(sa.bindparam(k, expanding=True) for k in lists))
        try:
            with self._get_engine().connect() as conn:
                if _is_postgres_family(conn.engine.url):
                    conn = conn.execution_options(postgresql_readonly=True)
                return pd.read_sql(statement, conn, params=params)
        except sa.exc.DBAPIError as exc:
            raise WarehouseError(self._explain(exc)) from None
        except pd.errors.DatabaseError as exc:  # pandas wraps errors raised while executing
            if isinstance(exc.__cause__, sa.exc.DBAPIError):
                raise WarehouseError(self._explain(exc.__cause__)) from None
            raise

    def check(self) -> str:
        self.query("SELECT 1 AS ok")
        return self.describe()

    def tables(self, names: Sequence[str]) -> set[str]:
        """Which of these tables exist (information_schema works on DuckDB, PostgreSQL, Redshift)."""
        found = self.query(
            "SELECT table_name FROM information_schema.tables WHERE table_name IN :names",
            {"names": list(names)},
        )
        return set(found["table_name"].str.lower())
