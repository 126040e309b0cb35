"""Read-only warehouse access. Local default: the DuckDB file `$ECM_HOME/warehouse.duckdb`.
Production: Redshift through sqlalchemy-redshift (`redshift+psycopg2`) from the REDSHIFT_*
variables, or any SQLAlchemy URL in ECM_WAREHOUSE_URL.

Defence in depth keeps it read-only, so that a query bug can never write:
1. a guard that parses every statement with sqlglot and refuses anything but one query that reads
   (no DML, DDL, COPY, SELECT INTO, file-reading table functions) before a connection is opened;
2. read-only sessions: PostgreSQL sessions default to read-only transactions and every query runs
   in `BEGIN READ ONLY` (Redshift has no session default, so it gets the transaction mode only);
   DuckDB is opened read-only with external access (files, network, extensions) switched off;
3. the statement timeout on every query (`snapshot.statement_timeout_seconds`);
4. the SELECT-only database user production should use.
"""

from __future__ import annotations

import threading
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import dagster as dg
import pandas as pd
import sqlalchemy as sa
import sqlglot
from pydantic import Field, PrivateAttr
from sqlglot import exp

from ecm_pipeline.settings import ecm_home, load_settings

# Statement kinds that change something, anywhere in the tree (a data-modifying CTE included).
_WRITES = (exp.Insert, exp.Update, exp.Delete, exp.Merge, exp.Create, exp.Drop, exp.Alter, exp.Copy,
           exp.Command, exp.Into, exp.TruncateTable, exp.Grant, exp.Set, exp.Pragma, exp.Use, exp.Transaction)
# Functions that read files or reach other servers; refused even inside a SELECT.
_FILE_FUNCTIONS = {
    "read_csv", "read_csv_auto", "read_parquet", "read_json", "read_json_auto", "read_ndjson", "read_text",
    "read_blob", "parquet_scan", "csv_scan", "glob", "sniff_csv", "pg_read_file", "pg_read_binary_file",
    "pg_ls_dir", "pg_stat_file", "lo_import", "lo_export", "dblink", "dblink_exec", "query", "query_table",
}
_SQLGLOT_DIALECTS = {"duckdb": "duckdb", "redshift": "redshift", "postgresql": "postgres", "sqlite": "sqlite"}


class WarehouseError(Exception):
    """The warehouse cannot be reached or refused a query; the message says what to do."""


class UnsafeQueryError(WarehouseError):
    """A statement other than one read-only query was about to be sent to the warehouse."""


def assert_read_only_query(sql: str, dialect: str | None = None) -> None:
    """Refuse anything but a single query that only reads, before it reaches the server."""
    try:
        statements = [s for s in sqlglot.parse(sql, read=dialect) if s is not None]
    except sqlglot.errors.ParseError as exc:
        first = str(exc).splitlines()[0] if str(exc) else "parse error"
        raise UnsafeQueryError(f"refused: the statement cannot be parsed as one read-only query ({first})") from None
    if len(statements) != 1:
        raise UnsafeQueryError(f"refused: exactly one SQL statement may run on the warehouse (got {len(statements)})")
    root = statements[0]
    if not isinstance(root, exp.Query):
        raise UnsafeQueryError(f"refused: only SELECT/WITH queries may run on the warehouse (got {root.key.upper()})")
    writer = next(root.find_all(*_WRITES), None)
    if writer is not None:
        raise UnsafeQueryError(f"refused: the query contains a {writer.key.upper()} statement")
    for function in root.find_all(exp.Func):
        name = (function.name if isinstance(function, exp.Anonymous) else function.sql_name()).lower()
        if name in _FILE_FUNCTIONS:
            raise UnsafeQueryError(f"refused: the query calls {name}(), which reads outside the warehouse")


def default_warehouse_path() -> Path:
    return ecm_home() / "warehouse.duckdb"


def _is_postgres_family(url: sa.URL) -> bool:
    return url.get_backend_name() in {"redshift", "postgresql"}


class WarehouseResource(dg.ConfigurableResource):
    """Runs bound, set-based read-only queries against the warehouse and returns DataFrames."""

    url: str = Field(default="", repr=False, description="Any SQLAlchemy URL (ECM_WAREHOUSE_URL); may hold a password.")
    host: str = ""
    port: int = 5439
    user: str = ""
    password: str = Field(default="", repr=False)
    database: str = ""
    statement_timeout_seconds: float = Field(
        default=0, description="0: snapshot.statement_timeout_seconds from the settings.")
    connect_timeout_seconds: int = 10

    _engine: sa.Engine | None = PrivateAttr(default=None)

    def resolved_url(self) -> sa.URL:
        if self.url:
            return sa.engine.make_url(self.url)
        if self.host:
            return sa.URL.create("redshift+psycopg2", username=self.user, password=self.password or None,
                                 host=self.host, port=self.port, database=self.database)
        return sa.engine.make_url(f"duckdb:///{default_warehouse_path()}")

    def timeout_seconds(self) -> float:
        return self.statement_timeout_seconds or load_settings().snapshot.statement_timeout_seconds

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
                connect_args = {"read_only": True, "config": {"enable_external_access": False}}
            elif _is_postgres_family(url):
                connect_args = {"connect_timeout": self.connect_timeout_seconds, "application_name": "ecm-pipeline"}
            engine = sa.create_engine(url, connect_args=connect_args, poolclass=sa.pool.NullPool)
            if _is_postgres_family(url):
                timeout_ms = max(1, int(self.timeout_seconds() * 1000))
                read_only_default = url.get_backend_name() == "postgresql"

                @sa.event.listens_for(engine, "connect")
                def _session_setup(dbapi_connection, _record) -> None:
                    # Integer milliseconds: Redshift rejects interval strings such as '120s'.
                    with dbapi_connection.cursor() as cursor:
                        cursor.execute(f"SET statement_timeout TO {timeout_ms}")
                        if read_only_default:  # not a Redshift parameter (integration notes §4.2)
                            cursor.execute("SET default_transaction_read_only TO on")
                    dbapi_connection.commit()

            self._engine = engine
        return self._engine

    def _explain(self, exc: BaseException) -> str:
        """A clear, secret-free reason for a failed warehouse call."""
        original = getattr(exc, "orig", exc)
        text = str(original).strip()
        reason = text.splitlines()[0] if text else type(original).__name__
        lowered = reason.lower()
        if "statement timeout" in lowered or "canceling statement" in lowered or "interrupt" in lowered:
            return f"the warehouse query exceeded the statement timeout of {self.timeout_seconds():g} s"
        if "password authentication failed" in lowered or ("role" in lowered and "does not exist" in lowered):
            user = self.resolved_url().username
            return f"the warehouse at {self._where()} refused the credentials of user {user!r}: {reason}"
        if any(s in lowered for s in ("could not connect", "connection refused", "could not translate host",
                                      "timeout expired", "no route to host", "server closed the connection")):
            return f"cannot reach the warehouse at {self._where()}: {reason}"
        password = self.password or self.resolved_url().password
        if password:
            reason = reason.replace(str(password), "***")
        return f"warehouse query failed: {reason}"

    def query(self, sql: str, params: Mapping[str, Any] | None = None) -> pd.DataFrame:
        url = self.resolved_url()
        assert_read_only_query(sql, _SQLGLOT_DIALECTS.get(url.get_backend_name()))
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
                return self._with_interrupt_timeout(conn, statement, params)
        except sa.exc.DBAPIError as exc:
            raise WarehouseError(self._explain(exc)) from None
        except pd.errors.DatabaseError as exc:  # pandas wraps errors raised while executing
            if isinstance(exc.__cause__, sa.exc.DBAPIError):
                raise WarehouseError(self._explain(exc.__cause__)) from None
            raise

    def _with_interrupt_timeout(self, conn: sa.Connection, statement: sa.TextClause, params: dict) -> pd.DataFrame:
        """DuckDB has no statement_timeout setting: interrupt the query from a timer instead."""
        raw = conn.connection.dbapi_connection
        timer = threading.Timer(self.timeout_seconds(), lambda: getattr(raw, "interrupt", lambda: None)())
        timer.daemon = True
        timer.start()
        try:
            return pd.read_sql(statement, conn, params=params)
        finally:
            timer.cancel()

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
