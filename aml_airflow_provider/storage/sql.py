"""SQL datastores (PostgreSQL, MySQL/MariaDB, SQL Server): export tables, queries, procedures; append files."""

from __future__ import annotations

import csv
import hashlib
import json
import logging
import os
import re
import threading
import time
import uuid
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import closing, contextmanager
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from datetime import time as dtime
from decimal import ROUND_HALF_EVEN, Context, Decimal
from pathlib import Path
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa
from sqlalchemy import exc as sa_exc
from sqlalchemy.engine import URL

from aml_airflow_provider._secrets import redact
from aml_airflow_provider.exceptions import DatastoreError, UserErrorException

if TYPE_CHECKING:
    import pyarrow as pa
    from sqlalchemy.engine import Connection, Engine

log = logging.getLogger(__name__)

#: Datastore kinds, as registered by ``register_azure_postgre_sql``, ``_my_sql`` and ``_sql_database``.
SQL_KINDS = ("postgresql", "mysql", "sqlserver")
#: File formats of :meth:`SqlStore.export` and :meth:`SqlStore.append`.
FILE_FORMATS = ("csv", "parquet")
#: Retries of a whole export or append after a transient error (lost connection, deadlock...).
DEFAULT_RETRIES = 3
#: First back-off in seconds; later ones double.
DEFAULT_RETRY_BACKOFF = 2.0
#: Seconds to wait for a connection before giving up.
DEFAULT_CONNECT_TIMEOUT = 15
#: Shortest interval between two progress lines.
PROGRESS_INTERVAL = 2.0
#: Bookkeeping table that makes :meth:`SqlStore.append` idempotent.
TRANSFER_LOG_TABLE = "aml_transfer_log"
MAX_TRANSFER_ID_LENGTH = 128
#: Tables up to this many rows get an md5 over their rows on PostgreSQL (a sum of row hashes above).
TABLE_MD5_MAX_ROWS = 1_000_000
#: Query results up to this many rows get a hash of their rows (just the count above).
QUERY_HASH_MAX_ROWS = 100_000


@dataclass(frozen=True)
class _Driver:
    drivername: str
    package: str
    default_port: int


_DRIVERS = {
    "postgresql": _Driver("postgresql+psycopg2", "psycopg2-binary", 5432),
    "mysql": _Driver("mysql+pymysql", "pymysql", 3306),
    "sqlserver": _Driver("mssql+pymssql", "pymssql", 1433),
}

_TRANSFER_LOG = sa.Table(
    TRANSFER_LOG_TABLE,
    sa.MetaData(),
    sa.Column("transfer_id", sa.String(MAX_TRANSFER_ID_LENGTH), primary_key=True),
    sa.Column("target", sa.String(512), nullable=False),
    sa.Column("rows", sa.BigInteger, nullable=False),
    sa.Column("finished", sa.DateTime),
)

# SQLSTATEs (PostgreSQL) and error numbers (MySQL/MariaDB, SQL Server) worth retrying the whole transfer for.
_TRANSIENT_SQLSTATES = {"40001", "40P01", "53300", "57P01", "57P02", "57P03"}
_TRANSIENT_ERRNOS = {
    # MySQL/MariaDB: too many connections, shutdown, lock wait timeout, deadlock, connection killed,
    # can't connect, server gone away, lost connection, disconnected for inactivity.
    *(1040, 1053, 1205, 1213, 1927, 2002, 2003, 2006, 2013, 2055, 4031),
    # SQL Server (1205 is its deadlock too): DB-Lib timeouts/connection errors, Azure SQL throttling/failover.
    *(20003, 20006, 20009, 20047, 40197, 40501, 40613, 49918, 49919, 49920, 10928, 10929),
}
_TRANSIENT_TEXT = (
    "connection refused",
    "server closed the connection unexpectedly",
    "connection reset",
    "could not connect to server",
    "terminating connection",
    "timeout expired",
    "connection timed out",
    "broken pipe",
    "ssl syscall error",
)

# How SQLAlchemy's text() finds bind parameters; names we do not bind are escaped with it.
_BIND_RE = re.compile(r"(?<![:\w\\]):(\w+)(?![:\w])")
_QUOTE_CLOSERS = {'"': '"', "`": "`", "[": "]"}
_DECIMAL_CONTEXT = Context(prec=100)


@dataclass(frozen=True)
class ExportStats:
    """What :meth:`SqlStore.export` wrote.

    :param rows: data rows (the CSV header is not counted)
    :param bytes: size of the file
    :param columns: column names, in file order
    """

    rows: int
    bytes: int
    columns: list[str]


@dataclass(frozen=True)
class AppendStats:
    """What :meth:`SqlStore.append` did.

    :param rows: rows appended; when ``already_done``, the rows the earlier transfer appended
    :param files: files read (0 when ``already_done``)
    :param already_done: the transfer id was already recorded, so nothing was appended
    """

    rows: int
    files: int
    already_done: bool


@dataclass(frozen=True)
class _Plan:
    """A source made executable: a statement (or, for a MySQL CALL, driver-level SQL) and how to run it."""

    stmt: Any = None
    binds: Mapping[str, Any] = field(default_factory=dict)
    sql: str = ""
    params: tuple[Any, ...] = ()
    stream: bool = True
    autocommit: bool = False
    commit: bool = False
    mysql_call: bool = False
    table: tuple[str | None, str] | None = None


@dataclass
class _Rows:
    columns: list[str]
    description: Sequence[Any] | None
    batches: Iterator[Sequence[Sequence[Any]]]


@dataclass(frozen=True)
class _Insert:
    """An INSERT of some of a table's columns, bound by position-derived keys (safe for any column name)."""

    stmt: Any
    keys: list[str]

    @classmethod
    def of(cls, target: _Target, columns: list[str]) -> _Insert:
        keys = [f"c{i}" for i in range(len(columns))]
        # Untyped columns: values reach the driver as read (text for CSV) and the database converts them.
        table = sa.Table(
            target.name,
            sa.MetaData(),
            *(sa.Column(c, key=k) for c, k in zip(columns, keys, strict=True)),
            schema=target.schema,
        )
        return cls(table.insert(), keys)


@dataclass(frozen=True)
class _Target:
    schema: str | None
    name: str
    label: str
    columns: list[str]
    types: dict[str, Any]
    required: frozenset[str]
    generated: frozenset[str]


class SqlStore:
    """A SQL datastore: an engine built lazily from settings + secret.

    No connection is opened until an operation needs one. Errors leave as :class:`DatastoreError`
    raised ``from None``, with the password redacted: driver errors are summarised, not chained.

    :param name: the datastore's name (for messages)
    :param kind: one of :data:`SQL_KINDS`
    :param settings: ``server_name`` (host, may end in ``:port``), ``port`` (optional), ``database_name``,
        ``user_id``; optional ``ssl`` (bool: require an encrypted connection, without certificate checks;
        use ``options`` for stricter ones) and ``options`` (driver arguments put in the URL query, e.g.
        ``{"sslmode": "verify-full", "sslrootcert": "..."}`` or ``{"ssl_ca": "..."}``)
    :param secret: the password, or ``None``; never logged nor put in a message
    :param retries: retries of a whole export/append after a transient error
    :param retry_backoff: first back-off in seconds between retries (doubles each time)
    :param progress_interval: shortest interval between two progress lines
    """

    def __init__(
        self,
        name: str,
        kind: str,
        settings: Mapping[str, Any],
        secret: str | None,
        *,
        retries: int = DEFAULT_RETRIES,
        retry_backoff: float = DEFAULT_RETRY_BACKOFF,
        progress_interval: float = PROGRESS_INTERVAL,
    ) -> None:
        if kind not in SQL_KINDS:
            raise UserErrorException(f"SQL datastore '{name}': kind {kind!r} is not one of {', '.join(SQL_KINDS)}.")
        self.name = name
        self.kind = kind
        self._secret = secret or None
        self._retries = max(0, int(retries))
        self._retry_backoff = float(retry_backoff)
        self._progress_interval = float(progress_interval)
        driver = _DRIVERS[kind]
        self.host, self.port = _host_and_port(name, settings, driver.default_port)
        self.database = settings.get("database_name") or ""
        if not self.database:
            raise UserErrorException(f"SQL datastore '{name}': its settings have no 'database_name'.")
        self.user = settings.get("user_id") or None
        options = settings.get("options") or {}
        if not isinstance(options, Mapping):
            raise UserErrorException(f"SQL datastore '{name}': 'options' must be a mapping of driver arguments.")
        self._url, self._connect_args = self._build_url(driver, _as_bool(settings.get("ssl", False)), options)
        self._engine_obj: Engine | None = None
        self._lock = threading.Lock()

    def _build_url(self, driver: _Driver, ssl: bool, options: Mapping[str, Any]) -> tuple[URL, dict[str, Any]]:
        query = {str(k): _option_text(v) for k, v in options.items()}
        connect_args: dict[str, Any] = {}
        if self.kind == "postgresql":
            query.setdefault("connect_timeout", str(DEFAULT_CONNECT_TIMEOUT))
            query.setdefault("application_name", "aml-airflow-provider")
            if ssl:
                query.setdefault("sslmode", "require")
        elif self.kind == "mysql":
            # utf8mb4: MySQL's "utf8" cannot hold 4-byte characters (emoji, some CJK).
            query.setdefault("charset", "utf8mb4")
            query.setdefault("connect_timeout", str(DEFAULT_CONNECT_TIMEOUT))
            if ssl and not any(k.startswith("ssl_") for k in query):
                # PyMySQL turns TLS on for a non-empty dict; without a CA it encrypts without verifying,
                # like PostgreSQL's sslmode=require.
                connect_args["ssl"] = {"check_hostname": False}
        else:
            connect_args["login_timeout"] = DEFAULT_CONNECT_TIMEOUT
        url = URL.create(
            driver.drivername,
            username=self.user,
            password=self._secret,
            host=self.host,
            port=self.port,
            database=self.database,
            query=query,
        )
        return url, connect_args

    def __repr__(self) -> str:
        return f"SqlStore({self.name!r}, kind={self.kind!r}, url={self._url.render_as_string(hide_password=True)!r})"

    def __enter__(self) -> SqlStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.dispose()

    def describe(self) -> str:
        """``SQL datastore 'x' (postgresql database 'test' on 127.0.0.1:5432)``; never the password."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"SQL datastore '{self.name}' ({self.kind} database '{self.database}' on {host}:{self.port})"

    def dispose(self) -> None:
        """Close the engine's pooled connections; the next operation builds a new engine."""
        with self._lock:
            engine, self._engine_obj = self._engine_obj, None
        if engine is not None:
            engine.dispose()

    # ------------------------------------------------------------------ connection

    def _engine(self) -> Engine:
        with self._lock:
            if self._engine_obj is None:
                kwargs: dict[str, Any] = {
                    "pool_pre_ping": True,
                    "pool_size": 2,
                    "connect_args": dict(self._connect_args),
                    # Rows of a failed batch would otherwise land in error messages and logs.
                    "hide_parameters": True,
                }
                if self.kind == "postgresql":
                    # Export JSON as the server's text, not as Python dicts re-serialised differently.
                    kwargs["json_deserializer"] = _identity
                try:
                    engine = sa.create_engine(self._url, **kwargs)
                except ImportError:
                    package = _DRIVERS[self.kind].package
                    raise DatastoreError(
                        f"{self.describe()}: its database driver is not installed on this worker; "
                        f"install it with `pip install {package}`."
                    ) from None
                if self.kind == "mysql":
                    sa.event.listen(engine, "connect", _mysql_strict_mode)
                self._engine_obj = engine
            return self._engine_obj

    @property
    def engine(self) -> Engine:
        """The SQLAlchemy engine, built on first use (for SQL beyond what this class offers)."""
        return self._engine()

    def check_access(self) -> None:
        """Connect and run ``SELECT 1``.

        :raises DatastoreError: saying what to fix (credentials, database name, host/port, TLS)
        """
        try:
            with self._engine().connect() as conn:
                conn.execute(sa.text("SELECT 1")).scalar_one()
        except sa_exc.DBAPIError as exc:
            who = f" as user '{self.user}'" if self.user else ""
            raise self._error(f"cannot connect{who}", exc) from None
        log.debug("%s: connected", self.describe())

    def _error(self, action: str, exc: BaseException) -> DatastoreError:
        message = _driver_message(exc)
        hint = _hint(message, _error_code(_orig(exc)))
        text = f"{self.describe()}: {action}: {_sentence(message)}" + (f" {hint}" if hint else "")
        return DatastoreError(self._redact(text))

    def _redact(self, text: str) -> str:
        return redact(text, [self._secret])

    def _with_retries(self, action: str, attempt_once: Callable[[], Any]) -> Any:
        attempt = 0
        while True:
            try:
                return attempt_once()
            except sa_exc.DBAPIError as exc:
                if attempt >= self._retries or not _is_transient(exc):
                    raise self._error(f"{action} failed", exc) from None
                attempt += 1
                delay = self._retry_backoff * 2 ** (attempt - 1)
                log.warning(
                    "%s: %s hit a transient error; retrying in %.1f s (retry %d of %d): %s",
                    self.describe(),
                    action,
                    delay,
                    attempt,
                    self._retries,
                    self._redact(_driver_message(exc)),
                )
                time.sleep(delay)

    # ------------------------------------------------------------------ sources

    def _source(
        self, query: str | None, table: str | None, procedure: str | None, params: Sequence[Any]
    ) -> tuple[str, str]:
        given = [(k, v) for k, v in (("query", query), ("table", table), ("procedure", procedure)) if v]
        if len(given) != 1:
            raise UserErrorException(
                f"{self.describe()}: give exactly one of query, table or procedure (got {len(given)})."
            )
        source, text = given[0]
        if isinstance(params, (str, bytes)):
            raise UserErrorException(f"{self.describe()}: params must be a sequence of values, not a string.")
        if source == "table":
            if params:
                raise UserErrorException(f"{self.describe()}: params apply to a query or procedure, not a table.")
            _split_name(text, "table")
        elif source == "procedure":
            _split_name(text, "procedure")
        return source, text

    def _plan(self, conn: Connection, source: str, text: str, params: Sequence[Any]) -> _Plan:
        params = tuple(params)
        binds = {f"p{i}": v for i, v in enumerate(params)}
        if source == "table":
            schema, name = self._resolve_table(conn, text)
            stmt = sa.select(sa.literal_column("*")).select_from(sa.table(name, schema=schema))
            return _Plan(stmt=stmt, table=(schema, name))
        if source == "query":
            sql = _strip_statement(text)
            unused = [k for k in binds if not re.search(rf"(?<![:\w\\]):{k}(?![:\w])", sql)]
            if unused:
                raise UserErrorException(
                    f"{self.describe()}: the query is given {len(params)} parameter(s) but does not use "
                    f"{', '.join(':' + k for k in unused)}; write :p0, :p1... where each value goes."
                )
            sql = _escape_binds(sql, binds)
            # .columns() makes it a SELECT for SQLAlchemy, so it streams through a server-side cursor.
            return _Plan(stmt=sa.text(sql).columns(), binds=binds, sql=sql)
        return self._plan_procedure(conn, text, params, binds)

    def _plan_procedure(self, conn: Connection, text: str, params: tuple[Any, ...], binds: Mapping[str, Any]) -> _Plan:
        parts = _split_name(text, "procedure")
        preparer = conn.dialect.identifier_preparer
        if self.kind == "mysql":
            qualified = ".".join(preparer.quote_identifier(p) for p, _ in parts)
            # With arguments PyMySQL %-formats the statement, so a % in a name must be doubled.
            name_sql = qualified.replace("%", "%%") if params else qualified
            sql = f"CALL {name_sql}({', '.join(['%s'] * len(params))})"
            return _Plan(sql=sql, params=params, mysql_call=True, commit=True)
        if self.kind == "sqlserver":
            qualified = _escape_binds(".".join(preparer.quote(p) for p, _ in parts), {})
            placeholders = ", ".join(f":{k}" for k in binds)
            stmt = sa.text(f"EXEC {qualified} {placeholders}".rstrip()).columns()
            return _Plan(stmt=stmt, binds=binds, commit=True)
        schema, name, prokind = self._resolve_pg_routine(conn, parts, text)
        qualified = _escape_binds(preparer.format_table(sa.table(name, schema=schema)), {})
        call = f"{qualified}({', '.join(f':{k}' for k in binds)})"
        if prokind == "p":
            # A procedure returns at most its OUT parameters; run it outside a transaction block, as
            # CALL would be from psql, so that procedures that COMMIT work.
            return _Plan(stmt=sa.text(f"CALL {call}"), binds=binds, stream=False, autocommit=True)
        return _Plan(stmt=sa.text(f"SELECT * FROM {call}").columns(), binds=binds, commit=True)

    def _resolve_pg_routine(
        self, conn: Connection, parts: list[tuple[str, bool]], text: str
    ) -> tuple[str | None, str, str]:
        (schema, schema_quoted), (name, quoted) = _schema_and_name(parts)
        sql = (
            "SELECT p.proname, n.nspname, p.prokind FROM pg_catalog.pg_proc p "
            "JOIN pg_catalog.pg_namespace n ON n.oid = p.pronamespace WHERE lower(p.proname) = lower(:name)"
        )
        binds: dict[str, Any] = {"name": name}
        if schema is None:
            sql += " AND pg_catalog.pg_function_is_visible(p.oid)"
        else:
            sql += " AND lower(n.nspname) = lower(:schema)"
            binds["schema"] = schema
        found = conn.execute(sa.text(sql), binds).all()
        if schema is not None:
            nsp = _match(schema, schema_quoted, {r.nspname for r in found})
            found = [r for r in found if r.nspname == nsp]
        proname = _match(name, quoted, {r.proname for r in found})
        rows = [r for r in found if r.proname == proname]
        if not rows:
            raise DatastoreError(f"{self.describe()}: there is no function or procedure {text!r}.")
        kinds = {r.prokind for r in rows}
        return rows[0].nspname if schema is not None else None, rows[0].proname, "p" if kinds == {"p"} else "f"

    def _resolve_table(self, conn: Connection, text: str) -> tuple[str | None, str]:
        parts = _split_name(text, "table")
        (schema, schema_quoted), (name, quoted) = _schema_and_name(parts)
        insp = sa.inspect(conn)
        if schema is not None:
            found = _match(schema, schema_quoted, set(insp.get_schema_names()))
            if found is None:
                raise DatastoreError(f"{self.describe()}: table {text!r}: there is no schema {schema!r}.")
            schema = found
        names = set(insp.get_table_names(schema=schema)) | set(insp.get_view_names(schema=schema))
        if self.kind == "postgresql":
            names |= set(insp.get_materialized_view_names(schema=schema))
        found = _match(name, quoted, names)
        if found is None:
            where = f" in schema {schema!r}" if schema else ""
            raise DatastoreError(f"{self.describe()}: there is no table or view {name!r}{where} (from {text!r}).")
        return schema, found

    @contextmanager
    def _rows(self, conn: Connection, plan: _Plan, batch_rows: int) -> Iterator[_Rows]:
        if plan.mysql_call:
            with self._mysql_call_rows(conn, plan, batch_rows) as rows:
                yield rows
            return
        stmt = plan.stmt.execution_options(yield_per=batch_rows) if plan.stream else plan.stmt
        result = conn.execute(stmt, dict(plan.binds))
        try:
            if not result.returns_rows:
                yield _Rows([], None, iter(()))
            else:
                # Read now: SQLAlchemy drops the cursor once the rows are exhausted.
                description = result.cursor.description
                yield _Rows(list(result.keys()), description, (list(p) for p in result.partitions(batch_rows)))
        finally:
            result.close()

    @contextmanager
    def _mysql_call_rows(self, conn: Connection, plan: _Plan, batch_rows: int) -> Iterator[_Rows]:
        # The DB-API cursor directly: a CALL returns several result sets, and SQLAlchemy's result
        # leaves PyMySQL's unbuffered cursor half-drained after the first one.
        import pymysql
        import pymysql.cursors

        dbapi_conn = conn.connection.dbapi_connection
        cursor = dbapi_conn.cursor(pymysql.cursors.SSCursor)
        try:
            cursor.execute(plan.sql, plan.params or None)
            if cursor.description is None:
                yield _Rows([], None, iter(()))
            else:
                description = cursor.description
                yield _Rows([d[0] for d in description], description, _fetch_batches(cursor, batch_rows))
            while cursor.nextset():
                while cursor.fetchmany(1000):
                    pass
        except pymysql.Error as exc:
            disconnected = conn.dialect.is_disconnect(exc, dbapi_conn, cursor)
            if disconnected:
                conn.invalidate()
            raise sa_exc.DBAPIError.instance(
                plan.sql, None, exc, pymysql.Error, hide_parameters=True, connection_invalidated=disconnected
            ) from exc
        finally:
            if not conn.invalidated:
                cursor.close()

    # ------------------------------------------------------------------ export

    def export(
        self,
        dest: Path,
        *,
        query: str | None = None,
        table: str | None = None,
        procedure: str | None = None,
        params: Sequence[Any] = (),
        fmt: str = "csv",
        batch_rows: int = 50_000,
        report: Callable[[str], None] | None = None,
    ) -> ExportStats:
        """Write the rows of a table, query or stored procedure to ``dest``, streaming them in batches.

        CSV: UTF-8, header row, RFC 4180 quoting and CRLF line ends; NULL (and, unavoidably, the empty
        string) is an empty field; booleans are ``true``/``false``, timestamps ISO 8601 with a space,
        bytes ``\\x`` + hex, JSON/arrays JSON. Parquet: one row group per batch; column types come from
        the result's description (numeric(p,s) -> decimal(p,s); a numeric without precision ->
        decimal(38,18), rounding extra digits, as Spark does), else from the first batch's values.

        :param dest: the file to write; replaced only once the export is complete
        :param query: a query; ``params`` bind to ``:p0``, ``:p1``... in it (without params the text is
            sent as is)
        :param table: a table or view, ``name`` or ``schema.name`` (quoted parts are matched exactly,
            others case-insensitively when there is no exact match)
        :param procedure: PostgreSQL: a function (``SELECT * FROM fn(...)``) or procedure (``CALL``; its
            OUT parameters, if any, are the rows); MySQL: ``CALL`` (its first result set); SQL Server: ``EXEC``
        :param params: values for the query's ``:pN`` or the procedure's arguments, in order; always bound
        :param fmt: ``csv`` or ``parquet``
        :param batch_rows: rows fetched and written at a time
        :param report: called with a progress line at most every ``progress_interval`` seconds
        :raises UserErrorException: not exactly one source, or parameters that do not fit it
        :raises DatastoreError: the database refused (after retries of transient errors)
        """
        source, text = self._source(query, table, procedure, params)
        fmt = _check_format(fmt)
        batch_rows = _check_batch_rows(batch_rows)
        dest = Path(dest)
        start = time.monotonic()
        log.info("Exporting %s %r from %s to %s as %s", source, _shorten(text), self.describe(), dest, fmt)
        stats = self._with_retries(
            f"exporting {source} {_shorten(text)!r}",
            lambda: self._export_once(source, text, params, dest, fmt, batch_rows, report),
        )
        seconds = time.monotonic() - start
        log.info("Exported %d rows (%d bytes) to %s in %.1f s", stats.rows, stats.bytes, dest, seconds)
        return stats

    def _export_once(
        self,
        source: str,
        text: str,
        params: Sequence[Any],
        dest: Path,
        fmt: str,
        batch_rows: int,
        report: Callable[[str], None] | None,
    ) -> ExportStats:
        engine = self._engine()
        with engine.connect() as conn:
            plan = self._plan(conn, source, text, params)
        dest.parent.mkdir(parents=True, exist_ok=True)
        tmp = dest.with_name(f".{dest.name}.{uuid.uuid4().hex[:8]}.tmp")
        progress = _Progress(report, self._progress_interval)
        try:
            with engine.connect() as conn:
                if plan.autocommit:
                    conn.execution_options(isolation_level="AUTOCOMMIT")
                else:
                    conn.begin()
                with self._rows(conn, plan, batch_rows) as rows:
                    _check_unique(rows.columns, self.describe())
                    sink: _Sink
                    if fmt == "csv":
                        sink = _CsvSink(tmp, rows.columns)
                    else:
                        sink = _ParquetSink(tmp, rows.columns, self.kind, rows.description)
                    count = 0
                    with sink:
                        for batch in rows.batches:
                            sink.write(batch)
                            count += len(batch)
                            progress.exported(count, sink.size())
                if plan.commit:
                    conn.commit()
            os.replace(tmp, dest)
        except OSError as exc:
            raise DatastoreError(f"{self.describe()}: cannot write {dest}: {exc}") from exc
        finally:
            tmp.unlink(missing_ok=True)
        return ExportStats(rows=count, bytes=dest.stat().st_size, columns=list(rows.columns))

    # ------------------------------------------------------------------ append

    def append(
        self,
        sources: Sequence[Path],
        table: str,
        *,
        fmt: str = "csv",
        transfer_id: str,
        batch_rows: int = 10_000,
        report: Callable[[str], None] | None = None,
    ) -> AppendStats:
        """Append the rows of ``sources`` to an existing table, all files in one transaction, once.

        Each file's header (CSV) or schema (Parquet) names the columns; order does not matter, names
        match exactly or else case-insensitively. Every column of the table must be in the file except
        those the database fills itself (a default, identity/serial, auto-increment). CSV fields are
        bound as text (an empty field as NULL) and converted by the database to the column's type.

        ``transfer_id`` is recorded in :data:`TRANSFER_LOG_TABLE` (created if missing) in the same
        transaction: when it is already there nothing is appended, so a retried task appends once.

        :param sources: local CSV or Parquet files
        :param table: ``name`` or ``schema.name``
        :param fmt: ``csv`` or ``parquet``
        :param transfer_id: what makes this transfer unique, at most 128 characters
        :param batch_rows: rows inserted per statement batch
        :param report: called with a progress line at most every ``progress_interval`` seconds
        :raises DatastoreError: naming the file, rows and columns at fault; nothing is appended then
        """
        fmt = _check_format(fmt)
        batch_rows = _check_batch_rows(batch_rows)
        if not transfer_id or len(transfer_id) > MAX_TRANSFER_ID_LENGTH:
            raise UserErrorException(
                f"{self.describe()}: transfer_id must have 1 to {MAX_TRANSFER_ID_LENGTH} characters."
            )
        _split_name(table, "table")
        paths = [Path(p) for p in sources]
        missing = [str(p) for p in paths if not p.is_file()]
        if missing:
            raise DatastoreError(
                f"{self.describe()}: cannot append to table {table!r}: no such file(s): {', '.join(missing)}"
            )
        start = time.monotonic()
        log.info(
            "Appending %d %s file(s) to table %r of %s (transfer %s)",
            len(paths),
            fmt,
            table,
            self.describe(),
            transfer_id,
        )
        self._with_retries(f"creating table {TRANSFER_LOG_TABLE}", self._ensure_transfer_log)
        stats: AppendStats = self._with_retries(
            f"appending to table {table!r}",
            lambda: self._append_once(paths, table, fmt, transfer_id, batch_rows, report),
        )
        if stats.already_done:
            log.info("Transfer %s was already appended (%d rows); nothing to do", transfer_id, stats.rows)
        else:
            log.info("Appended %d rows from %d file(s) in %.1f s", stats.rows, stats.files, time.monotonic() - start)
        return stats

    def _ensure_transfer_log(self) -> None:
        engine = self._engine()
        try:
            with engine.begin() as conn:
                _TRANSFER_LOG.create(conn, checkfirst=True)
        except (sa_exc.ProgrammingError, sa_exc.IntegrityError, sa_exc.OperationalError):
            # Another task may have created it between the check and the CREATE.
            with engine.connect() as conn:
                if not sa.inspect(conn).has_table(TRANSFER_LOG_TABLE):
                    raise

    def _append_once(
        self,
        paths: list[Path],
        table: str,
        fmt: str,
        transfer_id: str,
        batch_rows: int,
        report: Callable[[str], None] | None,
    ) -> AppendStats:
        log_row = sa.select(_TRANSFER_LOG.c.rows).where(_TRANSFER_LOG.c.transfer_id == transfer_id)
        with self._engine().connect() as conn:
            done = conn.execute(log_row).first()
            if done is not None:
                conn.rollback()
                return AppendStats(rows=int(done.rows), files=0, already_done=True)
            target = self._target(conn, table)
            try:
                # Claim the id first: a concurrent run of the same transfer waits here, then fails.
                conn.execute(_TRANSFER_LOG.insert().values(transfer_id=transfer_id, target=target.label[:512], rows=0))
            except sa_exc.IntegrityError:
                conn.rollback()
                done = conn.execute(log_row).first()
                conn.rollback()
                return AppendStats(rows=int(done.rows) if done else 0, files=0, already_done=True)
            progress = _Progress(report, self._progress_interval)
            read = self._read_csv if fmt == "csv" else self._read_parquet
            total = 0
            for number, path in enumerate(paths, 1):
                with closing(read(path, target, batch_rows)) as batches:
                    for insert, first, batch in batches:
                        self._insert(conn, insert, target, batch, path, first)
                        total += len(batch)
                        progress.appended(total, number, len(paths))
            conn.execute(
                _TRANSFER_LOG.update()
                .where(_TRANSFER_LOG.c.transfer_id == transfer_id)
                .values(rows=total, finished=datetime.now(UTC).replace(tzinfo=None))
            )
            conn.commit()
        return AppendStats(rows=total, files=len(paths), already_done=False)

    def _target(self, conn: Connection, table: str) -> _Target:
        schema, name = self._resolve_table(conn, table)
        columns = sa.inspect(conn).get_columns(name, schema=schema)
        required, generated = set(), set()
        for col in columns:
            default = col.get("default")
            if isinstance(default, str) and default.strip().upper() == "NULL":
                default = None
            if col.get("computed"):
                generated.add(col["name"])
            elif default is None and not col.get("identity") and col.get("autoincrement") is not True:
                required.add(col["name"])
        return _Target(
            schema=schema,
            name=name,
            label=_label(schema, name),
            columns=[c["name"] for c in columns],
            types={c["name"]: c["type"] for c in columns},
            required=frozenset(required),
            generated=frozenset(generated),
        )

    def _map_columns(self, names: Sequence[str], target: _Target, path: Path) -> list[str]:
        mapped: list[str] = []
        unknown: list[str] = []
        for raw in names:
            column = _match(raw.strip(), False, set(target.columns))
            if column is None:
                unknown.append(raw)
            else:
                mapped.append(column)
        where = f"table {target.label} of {self.describe()}"
        if unknown:
            raise DatastoreError(
                f"{path.name}: column(s) {', '.join(repr(u) for u in unknown)} are not in {where} "
                f"(its columns: {', '.join(target.columns)})."
            )
        duplicated = sorted({c for c in mapped if mapped.count(c) > 1})
        if duplicated:
            raise DatastoreError(f"{path.name}: column(s) {', '.join(map(repr, duplicated))} appear twice in the file.")
        generated = [c for c in mapped if c in target.generated]
        if generated:
            raise DatastoreError(
                f"{path.name}: column(s) {', '.join(map(repr, generated))} of {where} are generated by the "
                "database and cannot be written; remove them from the file."
            )
        absent = [c for c in target.columns if c in target.required and c not in mapped]
        if absent:
            raise DatastoreError(
                f"{path.name}: column(s) {', '.join(map(repr, absent))} of {where} are missing from the file "
                "(they have no default)."
            )
        return mapped

    def _read_csv(self, path: Path, target: _Target, batch_rows: int) -> Iterator[tuple[_Insert, int, list[list[Any]]]]:
        try:
            with open(path, encoding="utf-8-sig", newline="") as fh:
                reader = csv.reader(fh)
                header = next(reader, None)
                if header is None:
                    log.info("%s is empty: nothing to append from it", path)
                    return
                columns = self._map_columns(header, target, path)
                insert = _Insert.of(target, columns)
                convert = [self._csv_converter(target.types[c]) for c in columns]
                batch: list[list[Any]] = []
                first = 1
                for row in reader:
                    if len(row) != len(columns):
                        if not row:
                            continue
                        raise DatastoreError(
                            f"{path.name} line {reader.line_num}: {len(row)} fields, but its header has {len(columns)}."
                        )
                    batch.append([f(v) for f, v in zip(convert, row, strict=True)])
                    if len(batch) >= batch_rows:
                        yield insert, first, batch
                        first += len(batch)
                        batch = []
                if batch:
                    yield insert, first, batch
        except UnicodeDecodeError as exc:
            raise DatastoreError(f"{path.name} is not UTF-8 text: {exc}") from None
        except csv.Error as exc:
            raise DatastoreError(f"{path.name} is not valid CSV: {exc}") from None

    def _csv_converter(self, column_type: Any) -> Callable[[str], Any]:
        if self.kind == "mysql" and isinstance(column_type, sa.Integer):
            # MySQL's BOOLEAN is TINYINT: accept the true/false that a PostgreSQL export writes.
            return lambda v: _MYSQL_BOOLEANS.get(v.lower(), v) if v else None
        return _empty_to_none

    def _read_parquet(
        self, path: Path, target: _Target, batch_rows: int
    ) -> Iterator[tuple[_Insert, int, list[list[Any]]]]:
        import pyarrow as pa
        import pyarrow.parquet as pq

        try:
            parquet = pq.ParquetFile(path)
        except (OSError, pa.ArrowException) as exc:
            raise DatastoreError(f"{path.name} is not a readable Parquet file: {exc}") from None
        with parquet:
            columns = self._map_columns(parquet.schema_arrow.names, target, path)
            insert = _Insert.of(target, columns)
            first = 1
            for record_batch in parquet.iter_batches(batch_size=batch_rows):
                values = [
                    [self._parquet_value(v) for v in record_batch.column(i).to_pylist()] for i in range(len(columns))
                ]
                batch = [list(row) for row in zip(*values, strict=True)]
                if batch:
                    yield insert, first, batch
                    first += len(batch)

    def _parquet_value(self, value: Any) -> Any:
        if isinstance(value, dict) or (isinstance(value, list) and self.kind != "postgresql"):
            return json.dumps(value, ensure_ascii=False, default=str)
        if self.kind == "mysql" and isinstance(value, datetime) and value.tzinfo is not None:
            # MariaDB rejects an offset in a DATETIME literal.
            return value.astimezone(UTC).replace(tzinfo=None)
        return value

    def _insert(
        self, conn: Connection, insert: _Insert, target: _Target, batch: list[list[Any]], path: Path, first: int
    ) -> None:
        try:
            conn.execute(insert.stmt, [dict(zip(insert.keys, row, strict=True)) for row in batch])
        except sa_exc.DBAPIError as exc:
            if _is_transient(exc):
                raise
            message = _driver_message(exc)
            raise DatastoreError(
                self._redact(
                    f"{self.describe()}: appending {path.name} (its data {_row_range(first, len(batch))}) to "
                    f"table {target.label} failed: {_sentence(message)} Nothing was appended: the transfer was "
                    "rolled back."
                )
            ) from None

    # ------------------------------------------------------------------ identity

    def identity(
        self,
        *,
        query: str | None = None,
        table: str | None = None,
        procedure: str | None = None,
        params: Sequence[Any] = (),
    ) -> dict[str, Any]:
        """What a reuse fingerprint uses for a SQL source: the statement and a cheap content identity.

        - table: its row count plus, on PostgreSQL, ``md5`` of the sorted md5s of its rows (``row::text``)
          up to :data:`TABLE_MD5_MAX_ROWS` rows, above that the sum of the first 64 bits of each row's
          md5 (order-independent, no sort, still one scan); on MySQL/MariaDB ``CHECKSUM TABLE``; on SQL
          Server ``CHECKSUM_AGG(BINARY_CHECKSUM(*))``. A view without a checksum is hashed like a query.
        - query: the row count of the result plus, up to :data:`QUERY_HASH_MAX_ROWS` rows, a SHA-256 over
          its rows (sorted, so row order does not matter); above that just the count.
        - procedure: ``volatile: True``, as its result cannot be known without running it.

        :returns: a JSON-serialisable dict
        """
        source, text = self._source(query, table, procedure, params)
        ident: dict[str, Any] = {
            "kind": self.kind,
            "server": f"{self.host}:{self.port}",
            "database": self.database,
            "source": source,
        }
        if source == "procedure":
            return {**ident, "procedure": text, "params": [_jsonable(p) for p in params], "volatile": True}
        found = self._with_retries(
            f"reading the identity of {source} {_shorten(text)!r}", lambda: self._identity_once(source, text, params)
        )
        return {**ident, **found}

    def _identity_once(self, source: str, text: str, params: Sequence[Any]) -> dict[str, Any]:
        with self._engine().connect() as conn:
            plan = self._plan(conn, source, text, params)
            if source == "query":
                count_sql = f"SELECT count(*) FROM ({plan.sql}) AS aml_q"
                rows = int(conn.execute(sa.text(count_sql), dict(plan.binds)).scalar_one())
                found: dict[str, Any] = {"query": text, "params": [_jsonable(p) for p in params], "rows": rows}
                found["sha256"] = self._hash_rows(conn, plan) if rows <= QUERY_HASH_MAX_ROWS else None
                return found
            assert plan.table is not None
            schema, name = plan.table
            qualified = conn.dialect.identifier_preparer.format_table(sa.table(name, schema=schema))
            rows = int(conn.execute(sa.select(sa.func.count()).select_from(sa.table(name, schema=schema))).scalar_one())
            found = {"table": _label(schema, name), "rows": rows}
            if self.kind == "postgresql":
                row_md5 = "md5(aml_row::text)"
                if rows <= TABLE_MD5_MAX_ROWS:
                    sql = (
                        f"SELECT md5(string_agg(h, '' ORDER BY h)) "
                        f"FROM (SELECT {row_md5} AS h FROM {qualified} AS aml_row) AS s"
                    )
                    found["md5"] = conn.execute(sa.text(_escape_binds(sql, {}))).scalar_one()
                else:
                    sql = f"SELECT sum(('x' || substr({row_md5}, 1, 16))::bit(64)::bigint) FROM {qualified} AS aml_row"
                    found["md5_sum"] = str(conn.execute(sa.text(_escape_binds(sql, {}))).scalar_one())
                return found
            if self.kind == "mysql":
                checksum = conn.exec_driver_sql(
                    f"CHECKSUM TABLE {qualified}", execution_options={"no_parameters": True}
                ).one()[1]
            else:
                checksum = conn.execute(
                    sa.select(sa.literal_column("CHECKSUM_AGG(BINARY_CHECKSUM(*))")).select_from(
                        sa.table(name, schema=schema)
                    )
                ).scalar_one()
            if checksum is not None:
                found["checksum"] = str(checksum)
            else:
                found["sha256"] = self._hash_rows(conn, plan) if rows <= QUERY_HASH_MAX_ROWS else None
            return found

    def _hash_rows(self, conn: Connection, plan: _Plan) -> str:
        digests: list[bytes] = []
        with self._rows(conn, plan, 10_000) as rows:
            for batch in rows.batches:
                for row in batch:
                    line = "\x1f".join("\x00" if v is None else _text(v) for v in row)
                    digests.append(hashlib.sha256(line.encode()).digest())
            header = "\x1f".join(rows.columns)
        digests.sort()
        total = hashlib.sha256(header.encode())
        for d in digests:
            total.update(d)
        return total.hexdigest()


def open_sql_store(name: str, kind: str, settings: Mapping[str, Any], secret: str | None) -> SqlStore:
    """Open the SQL datastore ``name`` (no connection is made until it is used).

    :param name: the datastore's name
    :param kind: one of :data:`SQL_KINDS`
    :param settings: see :class:`SqlStore`
    :param secret: the password, or ``None``
    """
    return SqlStore(name, kind, settings, secret)


# ---------------------------------------------------------------------- file sinks


class _Sink:
    def __enter__(self) -> _Sink:
        return self

    def __exit__(self, exc_type: object, *exc: object) -> None:
        self.close(complete=exc_type is None)

    def write(self, rows: Sequence[Sequence[Any]]) -> None:
        raise NotImplementedError

    def size(self) -> int:
        raise NotImplementedError

    def close(self, complete: bool) -> None:
        raise NotImplementedError


#: Types that csv.writer already writes as _text() would.
_CSV_AS_IS = frozenset({str, int, float, datetime, date, dtime, type(None)})


class _CsvSink(_Sink):
    def __init__(self, path: Path, columns: list[str]) -> None:
        self._fh = open(path, "w", encoding="utf-8", newline="")  # noqa: SIM115 - closed by close()
        self._writer = csv.writer(self._fh, lineterminator="\r\n")
        if columns:
            self._writer.writerow(columns)

    def write(self, rows: Sequence[Sequence[Any]]) -> None:
        # Only columns holding values whose str() differs from _text() are converted (the writer
        # itself writes None as an empty field): most columns then cost nothing in Python.
        convert = [i for i, column in enumerate(zip(*rows, strict=True)) if not set(map(type, column)) <= _CSV_AS_IS]
        if convert:
            rows = [list(row) for row in rows]
            for row in rows:
                for i in convert:
                    row[i] = _text(row[i])
        self._writer.writerows(rows)

    def size(self) -> int:
        self._fh.flush()
        return os.fstat(self._fh.fileno()).st_size

    def close(self, complete: bool) -> None:
        self._fh.close()


class _ParquetSink(_Sink):
    """Parquet with one row group per batch; the schema is fixed by the description and the first batch."""

    def __init__(self, path: Path, columns: list[str], kind: str, description: Sequence[Any] | None) -> None:
        self._path = path
        self._columns = columns
        self._hints = [_arrow_type_hint(kind, d) for d in description] if description else [None] * len(columns)
        self._schema: pa.Schema | None = None
        self._writer: Any = None

    def _open(self, rows: Sequence[Sequence[Any]]) -> None:
        import pyarrow as pa
        import pyarrow.parquet as pq

        by_column = list(zip(*rows, strict=True)) if rows else [()] * len(self._columns)
        types = [hint or _infer_arrow_type(values) for hint, values in zip(self._hints, by_column, strict=True)]
        self._schema = pa.schema([pa.field(n, t) for n, t in zip(self._columns, types, strict=True)])
        self._writer = pq.ParquetWriter(self._path, self._schema)

    def write(self, rows: Sequence[Sequence[Any]]) -> None:
        import pyarrow as pa

        if self._writer is None:
            self._open(rows)
        assert self._schema is not None
        by_column = list(zip(*rows, strict=True))
        arrays = [_arrow_array(f.name, values, f.type) for f, values in zip(self._schema, by_column, strict=True)]
        table = pa.Table.from_arrays(arrays, schema=self._schema)
        self._writer.write_table(table, row_group_size=max(len(rows), 1))

    def size(self) -> int:
        return self._path.stat().st_size if self._path.exists() else 0

    def close(self, complete: bool) -> None:
        # An empty result still gets a file with its schema; a failed one is deleted by the caller.
        if self._writer is None and complete:
            self._open([])
        if self._writer is not None:
            self._writer.close()


def _arrow_type_hint(kind: str, desc: Sequence[Any]) -> pa.DataType | None:
    """The Arrow type of a result column from its DB-API description, or ``None`` to infer it from values."""
    import pyarrow as pa

    code, precision, scale = desc[1], desc[4], desc[5]
    if kind == "postgresql":
        if code == 1700:
            return _decimal_type(precision, scale)
        factories: dict[Any, Callable[[], pa.DataType]] = {
            16: pa.bool_,
            20: pa.int64,
            21: pa.int16,
            23: pa.int32,
            26: pa.int64,
            700: pa.float32,
            701: pa.float64,
            1082: pa.date32,
            1083: lambda: pa.time64("us"),
            1114: lambda: pa.timestamp("us"),
            1184: lambda: pa.timestamp("us", tz="UTC"),
            1186: lambda: pa.duration("us"),
            17: pa.binary,
            **dict.fromkeys((18, 19, 25, 114, 142, 1042, 1043, 1266, 2950, 3802), pa.string),
        }
    elif kind == "mysql":
        if code in (0, 246) and precision is not None and scale is not None:
            # PyMySQL reports the display length, which counts the decimal point.
            return _decimal_type(precision - (1 if scale else 0), scale)
        factories = {
            **dict.fromkeys((1, 2, 3, 8, 9, 13), pa.int64),
            4: pa.float32,
            5: pa.float64,
            7: lambda: pa.timestamp("us"),
            10: pa.date32,
            11: lambda: pa.duration("us"),
            12: lambda: pa.timestamp("us"),
            **dict.fromkeys((6, 15, 245, 247, 248), pa.string),
            **dict.fromkeys((16, 255), pa.binary),
        }
    else:
        return None
    factory = factories.get(code)
    return factory() if factory else None


def _decimal_type(precision: int | None, scale: int | None) -> pa.DataType:
    import pyarrow as pa

    if precision is None or scale is None or not 0 < precision <= 76 or not 0 <= scale <= precision:
        # A numeric without a declared precision: Spark's choice for PostgreSQL's numeric.
        return pa.decimal128(38, 18)
    return pa.decimal128(precision, scale) if precision <= 38 else pa.decimal256(precision, scale)


def _infer_arrow_type(values: Sequence[Any]) -> pa.DataType:
    import pyarrow as pa

    present = [v for v in values if v is not None]
    if not present or all(isinstance(v, str) for v in present):
        return pa.string()
    if all(isinstance(v, (bytes, bytearray, memoryview)) for v in present):
        return pa.binary()
    if any(isinstance(v, dict) for v in present):
        return pa.string()
    try:
        inferred = pa.array(present).type
    except (pa.ArrowInvalid, pa.ArrowTypeError, pa.ArrowNotImplementedError, OverflowError):
        return pa.string()
    if pa.types.is_integer(inferred):
        return pa.int64()
    if pa.types.is_decimal(inferred):
        return pa.decimal128(38, 18)
    if pa.types.is_null(inferred):
        return pa.string()
    return inferred


def _arrow_array(name: str, values: Sequence[Any], arrow_type: pa.DataType) -> pa.Array:
    import pyarrow as pa

    if pa.types.is_string(arrow_type):
        values = [v if v is None or isinstance(v, str) else _text(v) for v in values]
    elif pa.types.is_binary(arrow_type):
        values = [_as_bytes(v) for v in values]
    try:
        try:
            return pa.array(values, type=arrow_type)
        except (pa.ArrowInvalid, pa.ArrowTypeError):
            if not pa.types.is_decimal(arrow_type):
                raise
            # More fractional digits than the type keeps (a numeric without precision): round them,
            # which is rarely needed, so it is not paid for on every batch.
            return pa.array([_fit_decimal(v, arrow_type.scale) for v in values], type=arrow_type)
    except (pa.ArrowException, OverflowError, TypeError, ValueError) as exc:
        raise DatastoreError(
            f"Column {name!r}: a value does not fit the Parquet type {arrow_type} chosen from the result's "
            f"description or first rows: {_shorten(str(exc), 300)}"
        ) from None


def _fit_decimal(value: Any, scale: int) -> Any:
    if isinstance(value, float):
        value = Decimal(repr(value))
    if isinstance(value, Decimal) and value.is_finite() and int(value.as_tuple().exponent) < -scale:
        return value.quantize(Decimal(1).scaleb(-scale), rounding=ROUND_HALF_EVEN, context=_DECIMAL_CONTEXT)
    return value


def _as_bytes(value: Any) -> Any:
    if isinstance(value, (memoryview, bytearray)):
        return bytes(value)
    if isinstance(value, str):
        return value.encode()
    return value


# ---------------------------------------------------------------------- helpers


class _Progress:
    def __init__(self, report: Callable[[str], None] | None, interval: float) -> None:
        self._report = report
        self._interval = interval
        self._start = self._last = time.monotonic()

    def _due(self) -> float | None:
        if self._report is None:
            return None
        now = time.monotonic()
        if now - self._last < self._interval:
            return None
        self._last = now
        return max(now - self._start, 1e-9)

    def exported(self, rows: int, nbytes: int) -> None:
        elapsed = self._due()
        if elapsed is not None and self._report is not None:
            self._report(f"exported {rows} rows, {nbytes / 1e6:.1f} MB, {nbytes / 1e6 / elapsed:.1f} MB/s")

    def appended(self, rows: int, file_number: int, files: int) -> None:
        elapsed = self._due()
        if elapsed is not None and self._report is not None:
            self._report(f"appended {rows} rows (file {file_number} of {files}), {rows / elapsed:.0f} rows/s")


_MYSQL_BOOLEANS = {"true": "1", "false": "0"}


def _identity(value: Any) -> Any:
    return value


def _empty_to_none(value: str) -> str | None:
    return value or None


def _mysql_strict_mode(dbapi_conn: Any, _record: Any) -> None:
    # Without a strict mode MySQL stores 0 for 'abc' in an INT column instead of failing the append.
    with dbapi_conn.cursor() as cursor:
        cursor.execute("SET SESSION sql_mode = CONCAT_WS(',', NULLIF(@@sql_mode, ''), 'STRICT_ALL_TABLES')")


def _fetch_batches(cursor: Any, size: int) -> Iterator[Sequence[Sequence[Any]]]:
    while True:
        rows = cursor.fetchmany(size)
        if not rows:
            return
        yield rows


def _host_and_port(name: str, settings: Mapping[str, Any], default_port: int) -> tuple[str, int]:
    server = str(settings.get("server_name") or "").strip()
    if not server:
        raise UserErrorException(f"SQL datastore '{name}': its settings have no 'server_name'.")
    host, port_text = server, None
    if server.startswith("["):
        host, _, rest = server[1:].partition("]")
        port_text = rest[1:] if rest.startswith(":") else None
    elif server.count(":") == 1:
        host, port_text = server.split(":")
    port = settings.get("port")
    try:
        given = int(port) if port not in (None, "") else None
        embedded = int(port_text) if port_text else None
    except (TypeError, ValueError):
        raise UserErrorException(f"SQL datastore '{name}': the port in its settings is not a number.") from None
    if given is not None and embedded is not None and given != embedded:
        raise UserErrorException(
            f"SQL datastore '{name}': server_name says port {embedded} but port says {given}; give one."
        )
    return host, given or embedded or default_port


def _as_bool(value: Any) -> bool:
    if isinstance(value, str):
        return value.strip().lower() in ("1", "true", "yes", "on", "require", "required")
    return bool(value)


def _option_text(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def _split_name(text: str, what: str) -> list[tuple[str, bool]]:
    """``schema.name`` -> ``[(schema, quoted), (name, quoted)]``; parts may be quoted with "", `` or []."""
    parts: list[tuple[str, bool]] = []
    s, i = text.strip(), 0
    while True:
        while i < len(s) and s[i].isspace():
            i += 1
        if i < len(s) and s[i] in _QUOTE_CLOSERS:
            closer, i, buf = _QUOTE_CLOSERS[s[i]], i + 1, []
            while True:
                if i >= len(s):
                    raise UserErrorException(f"The {what} name {text!r} has an unclosed quote.")
                if s[i] == closer:
                    if s[i + 1 : i + 2] == closer:  # a doubled quote stands for itself
                        buf.append(closer)
                        i += 2
                        continue
                    i += 1
                    break
                buf.append(s[i])
                i += 1
            parts.append(("".join(buf), True))
        else:
            end = s.find(".", i)
            end = len(s) if end < 0 else end
            parts.append((s[i:end].strip(), False))
            i = end
        while i < len(s) and s[i].isspace():
            i += 1
        if i >= len(s):
            break
        if s[i] != ".":
            raise UserErrorException(f"The {what} name {text!r} is not 'name' or 'schema.name'.")
        i += 1
    if not 1 <= len(parts) <= 2 or any(not p for p, _ in parts):
        raise UserErrorException(f"The {what} name {text!r} is not 'name' or 'schema.name'.")
    return parts


def _schema_and_name(parts: list[tuple[str, bool]]) -> tuple[tuple[str | None, bool], tuple[str, bool]]:
    if len(parts) == 1:
        return (None, False), parts[0]
    return parts[0], parts[1]


def _match(name: str, quoted: bool, candidates: set[str]) -> str | None:
    if name in candidates:
        return name
    if quoted:
        return None
    folded = [c for c in candidates if c.casefold() == name.casefold()]
    return folded[0] if len(folded) == 1 else None


def _label(schema: str | None, name: str) -> str:
    return f"{schema}.{name}" if schema else name


def _escape_binds(sql: str, keep: Mapping[str, Any]) -> str:
    """Escape every ``:name`` that is not one of ``keep``, so text() sends it to the database as written."""
    return _BIND_RE.sub(lambda m: m.group(0) if m.group(1) in keep else "\\" + m.group(0), sql)


def _strip_statement(sql: str) -> str:
    return sql.strip().rstrip(";").rstrip()


def _check_format(fmt: str) -> str:
    fmt = (fmt or "").lower()
    if fmt not in FILE_FORMATS:
        raise UserErrorException(f"File format {fmt!r} is not one of {', '.join(FILE_FORMATS)}.")
    return fmt


def _check_batch_rows(batch_rows: int) -> int:
    if int(batch_rows) < 1:
        raise UserErrorException(f"batch_rows must be at least 1, not {batch_rows}.")
    return int(batch_rows)


def _check_unique(columns: list[str], where: str) -> None:
    twice = sorted({c for c in columns if columns.count(c) > 1})
    if twice:
        raise DatastoreError(
            f"{where}: the result has several columns named {', '.join(map(repr, twice))}; give them distinct aliases."
        )


def _row_range(first: int, count: int) -> str:
    return f"row {first}" if count == 1 else f"rows {first}-{first + count - 1}"


def _sentence(text: str) -> str:
    return text if text.endswith((".", "?", "!")) else text + "."


def _shorten(text: str, limit: int = 80) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _format_timedelta(value: timedelta) -> str:
    micros = value // timedelta(microseconds=1)
    sign = "-" if micros < 0 else ""
    seconds, micros = divmod(abs(micros), 1_000_000)
    minutes, seconds = divmod(seconds, 60)
    hours, minutes = divmod(minutes, 60)
    return f"{sign}{hours:02d}:{minutes:02d}:{seconds:02d}" + (f".{micros:06d}" if micros else "")


def _text(value: Any) -> str:
    """The text of a value in a CSV field (and in Parquet string columns)."""
    if isinstance(value, str):
        return value
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return repr(value)
    if isinstance(value, Decimal):
        return format(value, "f")
    if isinstance(value, datetime):
        return value.isoformat(sep=" ")
    if isinstance(value, (date, dtime)):
        return value.isoformat()
    if isinstance(value, timedelta):
        return _format_timedelta(value)
    if isinstance(value, (bytes, bytearray, memoryview)):
        return "\\x" + bytes(value).hex()
    if isinstance(value, (dict, list, tuple)):
        return json.dumps(value, ensure_ascii=False, default=str)
    return str(value)


def _jsonable(value: Any) -> Any:
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    return _text(value)


def _orig(exc: BaseException) -> BaseException:
    orig = getattr(exc, "orig", None)
    return orig if isinstance(exc, sa_exc.DBAPIError) and orig is not None else exc


def _error_code(orig: BaseException) -> str | int | None:
    pgcode = getattr(orig, "pgcode", None)
    if pgcode:
        return str(pgcode)
    args = getattr(orig, "args", ())
    if args and isinstance(args[0], int):
        return args[0]
    return None


def _is_transient(exc: sa_exc.DBAPIError) -> bool:
    if exc.connection_invalidated:
        return True
    orig = _orig(exc)
    code = _error_code(orig)
    if isinstance(code, str) and (code in _TRANSIENT_SQLSTATES or code.startswith("08")):
        return True
    if isinstance(code, int) and code in _TRANSIENT_ERRNOS:
        return True
    text = str(orig).lower()
    return any(s in text for s in _TRANSIENT_TEXT)


def _driver_message(exc: BaseException) -> str:
    orig = _orig(exc)
    args = getattr(orig, "args", ())
    if len(args) >= 2 and isinstance(args[0], int):
        # PyMySQL and pymssql: (number, message)
        message = args[1].decode(errors="replace") if isinstance(args[1], bytes) else str(args[1])
        text = f"{message.strip()} (error {args[0]})"
    else:
        text = str(orig).strip() or type(orig).__name__
    text = re.sub(r"\s*\n\s*", " ", text)
    return text if len(text) <= 2000 else text[:2000] + "..."


def _hint(message: str, code: str | int | None) -> str:
    """What to fix, for the errors a datastore's settings cause."""
    t = message.lower()
    if "does not support ssl" in t or "doesn't support it" in t:
        return 'The server does not accept encrypted connections: remove "ssl" from the datastore\'s settings.'
    if code == 3159 or ("ssl" in t and any(s in t for s in ("required", "ssl off", "secure transport"))):
        return 'The server requires an encrypted connection: set "ssl": true in the datastore\'s settings.'
    if (
        code in ("28P01", "28000", 1045, 18456)
        or any(s in t for s in ("password authentication failed", "access denied for user", "login failed"))
        or ('role "' in t and "does not exist" in t)
    ):
        return "Check the datastore's user_id and password (register it again with the right ones)."
    if ("database" in t and "does not exist" in t) or code == 1049 or "cannot open database" in t:
        return "Check the datastore's database_name."
    if "no pg_hba.conf entry" in t or "is not allowed to connect" in t:
        return "The server does not admit this machine or user: check its firewall rules and access settings."
    if code in (2002, 2003, 2005, 20009) or any(
        s in t
        for s in (
            "connection refused",
            "could not translate host name",
            "name or service not known",
            "timeout expired",
            "timed out",
            "no route to host",
            "can't connect",
        )
    ):
        return (
            "Check the datastore's server_name and port, that the server is running, "
            "and that its firewall admits this machine."
        )
    if code in ("42501", 1044, 1142, 1370) or "permission denied" in t or "command denied" in t:
        return "Grant the datastore's user the privilege this needs."
    return ""
