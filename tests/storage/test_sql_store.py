"""SqlStore against the machine's real PostgreSQL and MariaDB: exports, appends, identities and errors."""

from __future__ import annotations

import csv
import logging
import math
import re
import uuid
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import sqlalchemy as sa

from aml_airflow_provider.exceptions import DatastoreError, UserErrorException
from aml_airflow_provider.storage.sql import SQL_KINDS, SqlStore, open_sql_store

PG, MY = "postgresql", "mysql"
SETTINGS = {
    PG: {"server_name": "127.0.0.1", "port": 5432, "database_name": "test", "user_id": "postgres"},
    MY: {"server_name": "127.0.0.1:3306", "database_name": "test", "user_id": "root"},
}
ADMIN_URLS = {
    PG: "postgresql+psycopg2://postgres@127.0.0.1:5432/test",
    MY: "mysql+pymysql://root@127.0.0.1:3306/test?charset=utf8mb4",
}
ITEMS_DDL = {
    PG: "CREATE TABLE {t} (id int PRIMARY KEY, name text, amount numeric(12,2), created timestamp, flag boolean)",
    MY: "CREATE TABLE {t} (id int PRIMARY KEY, name varchar(200), amount decimal(12,2), created datetime(6), "
    "flag boolean) DEFAULT CHARSET=utf8mb4",
}
# A target with columns the database fills itself, which files may leave out.
TARGET_DDL = {
    PG: "CREATE TABLE {t} (row_id serial PRIMARY KEY, id int NOT NULL, name text, amount numeric(12,2), "
    "created timestamp, flag boolean, loaded timestamp DEFAULT now())",
    MY: "CREATE TABLE {t} (row_id int AUTO_INCREMENT PRIMARY KEY, id int NOT NULL, name varchar(200), "
    "amount decimal(12,2), created datetime(6), flag boolean, loaded datetime DEFAULT CURRENT_TIMESTAMP) "
    "DEFAULT CHARSET=utf8mb4",
}
COLUMNS = ["id", "name", "amount", "created", "flag"]
TRICKY = 'comma, "quote"\nnewline'
ROWS = [
    (1, "plain", Decimal("12.50"), datetime(2024, 1, 2, 3, 4, 5, 123456), True),
    (2, "Zoë 🐍 北京", Decimal("-0.01"), datetime(1999, 12, 31, 23, 59, 59), False),
    (3, TRICKY, Decimal("1234567890.99"), None, None),
    (4, None, None, datetime(2024, 2, 29), True),
]


@dataclass
class Scratch:
    """A per-test namespace (a PostgreSQL schema or a MariaDB database) and a store whose default it is."""

    kind: str
    admin: sa.Engine
    name: str
    settings: dict[str, Any]

    def table(self, prefix: str) -> str:
        return f"{self.name}.{prefix}_{uuid.uuid4().hex[:6]}"

    def run(self, *statements: str) -> None:
        with self.admin.begin() as conn:
            for statement in statements:
                conn.exec_driver_sql(statement)

    def rows(self, sql: str) -> list[tuple[Any, ...]]:
        with self.admin.connect() as conn:
            return [tuple(r) for r in conn.exec_driver_sql(sql)]

    def items(self, rows: list[tuple[Any, ...]] = ROWS) -> str:
        table = self.table("items")
        self.run(ITEMS_DDL[self.kind].format(t=table))
        if not rows:
            return table
        with self.admin.begin() as conn:
            conn.execute(
                sa.text(f"INSERT INTO {table} (id, name, amount, created, flag) VALUES (:id, :n, :a, :c, :f)"),
                [dict(zip(["id", "n", "a", "c", "f"], row, strict=True)) for row in rows],
            )
        return table

    def target(self) -> str:
        table = self.table("target")
        self.run(TARGET_DDL[self.kind].format(t=table))
        return table

    def names(self) -> str:
        """A table of (id, name) with an auto-numbered key."""
        table = self.table("names")
        key = "serial" if self.kind == PG else "int AUTO_INCREMENT"
        self.run(f"CREATE TABLE {table} (row_id {key} PRIMARY KEY, id int NOT NULL, name varchar(100))")
        return table


@pytest.fixture(scope="module")
def admins() -> Iterator[dict[str, sa.Engine]]:
    engines = {kind: sa.create_engine(url) for kind, url in ADMIN_URLS.items()}
    yield engines
    for engine in engines.values():
        engine.dispose()


@pytest.fixture(params=[PG, MY])
def kind(request: pytest.FixtureRequest) -> str:
    return request.param


@pytest.fixture
def scratch(kind: str, admins: dict[str, sa.Engine]) -> Iterator[Scratch]:
    name = f"aml_t_{uuid.uuid4().hex[:10]}"
    admin = admins[kind]
    if kind == PG:
        settings = {**SETTINGS[PG], "options": {"options": f"-csearch_path={name}"}}
        create, drop = f"CREATE SCHEMA {name}", f"DROP SCHEMA {name} CASCADE"
    else:
        settings = {**SETTINGS[MY], "database_name": name}
        create, drop = f"CREATE DATABASE {name} CHARACTER SET utf8mb4", f"DROP DATABASE {name}"
    with admin.begin() as conn:
        conn.exec_driver_sql(create)
    yield Scratch(kind, admin, name, settings)
    with admin.begin() as conn:
        conn.exec_driver_sql(drop)


@pytest.fixture
def store(scratch: Scratch) -> Iterator[SqlStore]:
    with SqlStore("sqlds", scratch.kind, scratch.settings, None, retry_backoff=0.01) as sql_store:
        yield sql_store


def read_csv(path: Path) -> list[list[str]]:
    with open(path, encoding="utf-8", newline="") as fh:
        return list(csv.reader(fh))


def read_parquet(path: Path) -> list[tuple[Any, ...]]:
    return [tuple(row.values()) for row in pq.read_table(path).to_pylist()]


def as_csv(kind: str, row: tuple[Any, ...]) -> list[str]:
    booleans = {True: "true", False: "false"} if kind == PG else {True: "1", False: "0"}
    id_, name, amount, created, flag = row
    return [
        str(id_),
        name or "",
        "" if amount is None else str(amount),
        "" if created is None else created.isoformat(sep=" "),
        "" if flag is None else booleans[flag],
    ]


def as_parquet(kind: str, row: tuple[Any, ...]) -> tuple[Any, ...]:
    # MariaDB's BOOLEAN is TINYINT: it comes back as 1/0.
    return row if kind == PG or row[4] is None else (*row[:4], int(row[4]))


def write_csv(path: Path, header: list[str], rows: list[list[str]]) -> Path:
    with open(path, "w", encoding="utf-8", newline="") as fh:
        csv.writer(fh).writerows([header, *rows])
    return path


def table_rows(scratch: Scratch, table: str) -> list[tuple[Any, ...]]:
    rows = scratch.rows(f"SELECT id, name, amount, created, flag FROM {table} ORDER BY id")
    return [(*r[:4], None if r[4] is None else bool(r[4])) for r in rows]


# ---------------------------------------------------------------------- settings, connection errors


def test_describe_and_repr_never_show_the_password() -> None:
    secret = "p@ss:w/rd%?#&=x"
    settings = {"server_name": "db.example.com:6543", "database_name": "test", "user_id": "u@db"}
    store = open_sql_store("pg", "postgresql", settings, secret)
    assert store.describe() == "SQL datastore 'pg' (postgresql database 'test' on db.example.com:6543)"
    assert secret not in repr(store) and "***" in repr(store)
    ipv6 = SqlStore("v6", "mysql", {"server_name": "[::1]:3307", "database_name": "d"}, None)
    assert ipv6.describe() == "SQL datastore 'v6' (mysql database 'd' on [::1]:3307)"
    assert SqlStore("ms", "sqlserver", {"server_name": "h", "database_name": "d"}, None).port == 1433
    assert SQL_KINDS == ("postgresql", "mysql", "sqlserver")
    with pytest.raises(UserErrorException, match="port"):
        SqlStore("x", "mysql", {"server_name": "h:3306", "port": 3307, "database_name": "d"}, None)
    with pytest.raises(UserErrorException, match="server_name"):
        SqlStore("x", "mysql", {"database_name": "d"}, None)
    with pytest.raises(UserErrorException, match="kind"):
        SqlStore("x", "oracle", {"server_name": "h", "database_name": "d"}, None)


def test_password_with_special_characters_connects(kind: str, admins: dict[str, sa.Engine], tmp_path: Path) -> None:
    user, secret = f"aml_u_{uuid.uuid4().hex[:8]}", "p@ss:w/rd%?#&='x"
    admin = admins[kind]
    if kind == PG:
        create = [f"CREATE ROLE {user} LOGIN PASSWORD 'p@ss:w/rd%?#&=''x'"]
        drop = [f"DROP ROLE {user}"]
    else:
        create = [
            f"CREATE USER '{user}'@'%' IDENTIFIED BY 'p@ss:w/rd%?#&=''x'",
            f"GRANT SELECT ON test.* TO '{user}'@'%'",
        ]
        drop = [f"DROP USER '{user}'@'%'"]
    with admin.begin() as conn:
        for statement in create:
            conn.exec_driver_sql(statement, execution_options={"no_parameters": True})
    try:
        with SqlStore("ds", kind, {**SETTINGS[kind], "user_id": user}, secret) as store:
            store.check_access()
            with store.engine.connect() as conn:  # the same engine, for SQL beyond SqlStore's
                assert conn.exec_driver_sql("SELECT 1").scalar() == 1
            store.export(tmp_path / "who.csv", query="SELECT current_user AS who")
            assert read_csv(tmp_path / "who.csv")[1][0].split("@")[0] == user
    finally:
        with admin.begin() as conn:
            for statement in drop:
                conn.exec_driver_sql(statement, execution_options={"no_parameters": True})


def test_wrong_password_is_a_clear_error_without_the_password() -> None:
    # MariaDB only: the PostgreSQL here trusts every local connection, so it accepts any password.
    secret = "Wr0ng-Passw0rd!"
    store = SqlStore("my", "mysql", SETTINGS[MY], secret)
    with pytest.raises(DatastoreError) as caught:
        store.check_access()
    message = str(caught.value)
    assert "SQL datastore 'my'" in message and "Access denied" in message
    assert "user_id and password" in message
    assert secret not in message and secret not in repr(store)
    assert caught.value.__cause__ is None and caught.value.__suppress_context__


def test_unknown_user_database_or_port_say_what_to_fix(kind: str) -> None:
    secret = "S3cret-Passw0rd"
    with pytest.raises(DatastoreError, match="user_id and password") as caught:
        SqlStore("ds", kind, {**SETTINGS[kind], "user_id": "aml_no_such_user"}, secret).check_access()
    assert secret not in str(caught.value)
    with pytest.raises(DatastoreError, match="database_name"):
        SqlStore("ds", kind, {**SETTINGS[kind], "database_name": "aml_no_such_db"}, None).check_access()
    closed = {**SETTINGS[kind], "server_name": "127.0.0.1", "port": 1}
    with pytest.raises(DatastoreError, match="server_name and port") as caught:
        SqlStore("ds", kind, closed, secret).check_access()
    assert "127.0.0.1:1" in str(caught.value) and secret not in str(caught.value)


def test_sqlserver_without_its_driver_is_a_clear_error() -> None:
    try:
        import pymssql  # noqa: F401
    except ImportError:
        pass
    else:
        pytest.skip("pymssql is installed here; this checks the message given without it")
    store = SqlStore("ms", "sqlserver", {"server_name": "sql.example.com", "database_name": "db"}, "pw-secret")
    assert store.describe() == "SQL datastore 'ms' (sqlserver database 'db' on sql.example.com:1433)"
    with pytest.raises(DatastoreError, match=r"pip install pymssql"):
        store.check_access()


# ---------------------------------------------------------------------- export


@pytest.mark.parametrize("fmt", ["csv", "parquet"])
def test_export_table(scratch: Scratch, store: SqlStore, tmp_path: Path, fmt: str) -> None:
    table = scratch.items()
    dest = tmp_path / "out" / f"items.{fmt}"
    stats = store.export(dest, table=table, fmt=fmt)
    assert (stats.rows, stats.columns, stats.bytes) == (4, COLUMNS, dest.stat().st_size)
    assert [p.name for p in dest.parent.iterdir()] == [dest.name]  # no temporary file left behind
    if fmt == "csv":
        header, *rows = read_csv(dest)
        assert header == COLUMNS
        assert sorted(rows, key=lambda r: int(r[0])) == [as_csv(scratch.kind, r) for r in ROWS]
        raw = dest.read_bytes().decode("utf-8")
        assert raw.startswith("id,name,amount,created,flag\r\n")
        assert '"comma, ""quote""\nnewline"' in raw  # RFC 4180: quoted, quotes doubled, newline kept
    else:
        assert sorted(read_parquet(dest)) == [as_parquet(scratch.kind, r) for r in ROWS]
        schema = pq.read_schema(dest)
        assert pa.types.is_integer(schema.field("id").type)
        assert pa.types.is_decimal(schema.field("amount").type) and schema.field("amount").type.scale == 2
        assert schema.field("created").type == pa.timestamp("us")


@pytest.mark.parametrize("fmt", ["csv", "parquet"])
def test_export_query_binds_params_and_keeps_percent_and_colon_literals(
    scratch: Scratch, store: SqlStore, tmp_path: Path, fmt: str
) -> None:
    table = scratch.items()
    query = (
        f"SELECT id, name, ':p9 and 100%' AS note FROM {table} "
        "WHERE id >= :p0 AND (name LIKE :p1 OR name IS NULL) ORDER BY id;"
    )
    stats = store.export(tmp_path / f"q.{fmt}", query=query, params=[2, "Zo%"], fmt=fmt)
    assert stats.rows == 2
    expected = [(2, "Zoë 🐍 北京", ":p9 and 100%"), (4, None, ":p9 and 100%")]
    if fmt == "csv":
        assert read_csv(tmp_path / "q.csv") == [["id", "name", "note"], *[[str(i), n or "", t] for i, n, t in expected]]
    else:
        assert read_parquet(tmp_path / "q.parquet") == expected
    hostile = f"x'; DROP TABLE {table}; --"
    assert store.export(tmp_path / "none.csv", query=query, params=[0, hostile]).rows == 1  # only the NULL name
    assert len(scratch.rows(f"SELECT id FROM {table}")) == 4


def test_export_in_small_batches_gives_the_same_rows(scratch: Scratch, tmp_path: Path) -> None:
    table = scratch.table("nums")
    scratch.run(f"CREATE TABLE {table} (id int PRIMARY KEY, label varchar(20))")
    with scratch.admin.begin() as conn:
        conn.execute(sa.text(f"INSERT INTO {table} VALUES (:i, :l)"), [{"i": i, "l": f"n{i}"} for i in range(1000)])
    lines: list[str] = []
    with SqlStore("ds", scratch.kind, scratch.settings, None, progress_interval=0) as store:
        for fmt in ("csv", "parquet"):
            small = store.export(tmp_path / f"small.{fmt}", table=table, fmt=fmt, batch_rows=7, report=lines.append)
            large = store.export(tmp_path / f"large.{fmt}", table=table, fmt=fmt)
            assert small.rows == large.rows == 1000
        assert read_csv(tmp_path / "small.csv") == read_csv(tmp_path / "large.csv")
        assert sorted(read_parquet(tmp_path / "small.parquet")) == [(i, f"n{i}") for i in range(1000)]
        assert read_parquet(tmp_path / "small.parquet") == read_parquet(tmp_path / "large.parquet")
    assert pq.ParquetFile(tmp_path / "small.parquet").metadata.num_row_groups == math.ceil(1000 / 7)
    assert pq.ParquetFile(tmp_path / "large.parquet").metadata.num_row_groups == 1
    assert len(lines) == 2 * math.ceil(1000 / 7)
    assert all(re.fullmatch(r"exported \d+ rows, \d+\.\d MB, \d+\.\d MB/s", line) for line in lines)
    assert lines[-1].startswith("exported 1000 rows")


@pytest.mark.parametrize("fmt", ["csv", "parquet"])
def test_export_stored_procedure_with_params(scratch: Scratch, store: SqlStore, tmp_path: Path, fmt: str) -> None:
    table = scratch.items()
    if scratch.kind == PG:
        scratch.run(
            f"CREATE FUNCTION {scratch.name}.items_from(min_id int, pattern text) RETURNS TABLE(id int, name text) "
            f"LANGUAGE sql AS $$ SELECT id, name FROM {table} WHERE id >= min_id AND name LIKE pattern ORDER BY id $$"
        )
    else:
        scratch.run(
            f"CREATE PROCEDURE {scratch.name}.items_from(IN min_id INT, IN pattern VARCHAR(50)) BEGIN "
            f"SELECT id, name FROM {table} WHERE id >= min_id AND name LIKE pattern ORDER BY id; SELECT 'second'; END"
        )
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        # Unqualified and in another case: found in the store's default schema, case-insensitively.
        stats = store.export(tmp_path / f"p.{fmt}", procedure="Items_From", params=[2, "%"], fmt=fmt)
        again = store.export(tmp_path / f"q.{fmt}", procedure=f"{scratch.name}.items_from", params=[3, "%"], fmt=fmt)
        store.check_access()  # the connection is clean for the next statement
    assert not [w for w in caught if "unbuffered" in str(w.message)]
    assert (stats.rows, stats.columns, again.rows) == (2, ["id", "name"], 1)
    if fmt == "csv":
        assert read_csv(tmp_path / "p.csv") == [["id", "name"], ["2", "Zoë 🐍 北京"], ["3", TRICKY]]
    else:
        assert read_parquet(tmp_path / "p.parquet") == [(2, "Zoë 🐍 北京"), (3, TRICKY)]


@pytest.mark.parametrize("kind", [PG])
def test_postgres_procedure_is_called_and_its_work_committed(scratch: Scratch, store: SqlStore, tmp_path: Path) -> None:
    # PostgreSQL tells functions (SELECT * FROM f()) from procedures (CALL p(), no result set).
    table = scratch.items([])
    scratch.run(
        f"CREATE PROCEDURE {scratch.name}.add_item(new_id int) LANGUAGE plpgsql AS $$ BEGIN "
        f"INSERT INTO {table} (id, name) VALUES (new_id, 'from proc'); COMMIT; END $$"
    )
    for fmt in ("csv", "parquet"):
        stats = store.export(tmp_path / f"call.{fmt}", procedure="add_item", params=[7 if fmt == "csv" else 8], fmt=fmt)
        assert (stats.rows, stats.columns) == (0, [])
    assert (tmp_path / "call.csv").read_bytes() == b""
    assert pq.read_table(tmp_path / "call.parquet").num_rows == 0
    assert scratch.rows(f"SELECT id, name FROM {table} ORDER BY id") == [(7, "from proc"), (8, "from proc")]


@pytest.mark.parametrize("kind", [PG])
def test_postgres_types_in_csv_and_parquet(scratch: Scratch, store: SqlStore, tmp_path: Path) -> None:
    query = (
        """SELECT '{"a": [1, 2]}'::jsonb AS j, '\\x00ff'::bytea AS b, '2024-01-01 10:00+02'::timestamptz AS tz, """
        "avg(x) AS mean, 1::numeric / 3 AS third FROM (VALUES (1), (2), (2)) AS v(x)"
    )
    store.export(tmp_path / "t.csv", query=query)
    store.export(tmp_path / "t.parquet", query=query, fmt="parquet")
    (j, b, tz, mean, third) = read_csv(tmp_path / "t.csv")[1]
    assert (j, b, mean, third) == ('{"a": [1, 2]}', "\\x00ff", "1.6666666666666667", "0.33333333333333333333")
    assert datetime.fromisoformat(tz) == datetime(2024, 1, 1, 8, tzinfo=UTC)
    # JSON stays the server's text; a numeric without precision becomes decimal(38, 18), as in Spark
    # (extra fractional digits rounded).
    assert read_parquet(tmp_path / "t.parquet") == [
        (
            '{"a": [1, 2]}',
            b"\x00\xff",
            datetime(2024, 1, 1, 8, tzinfo=UTC),
            Decimal("1.666666666666666700"),
            Decimal("0.333333333333333333"),
        )
    ]
    schema = pq.read_schema(tmp_path / "t.parquet")
    assert [str(f.type) for f in schema][2:] == ["timestamp[us, tz=UTC]", "decimal128(38, 18)", "decimal128(38, 18)"]


def test_export_rejects_bad_arguments_and_unknown_names(scratch: Scratch, store: SqlStore, tmp_path: Path) -> None:
    table = scratch.items()
    dest = tmp_path / "x.csv"
    with pytest.raises(UserErrorException, match="exactly one"):
        store.export(dest)
    with pytest.raises(UserErrorException, match="exactly one"):
        store.export(dest, table=table, query="SELECT 1")
    with pytest.raises(UserErrorException, match="not a table"):
        store.export(dest, table=table, params=[1])
    with pytest.raises(UserErrorException, match=":p0"):
        store.export(dest, query=f"SELECT * FROM {table} WHERE id = %s", params=[1])
    with pytest.raises(UserErrorException, match="format"):
        store.export(dest, table=table, fmt="xlsx")
    with pytest.raises(DatastoreError, match="no_such_table"):
        store.export(dest, table="no_such_table")
    short = table.split(".")[1]
    with pytest.raises(DatastoreError, match="no table or view"):
        store.export(dest, table=f"{short}; DROP TABLE {short}")
    with pytest.raises(DatastoreError, match=r"syntax|SYNTAX"):
        store.export(dest, query="SELEKT 1")
    assert not dest.exists()
    assert len(scratch.rows(f"SELECT id FROM {table}")) == 4


def test_export_then_append_copies_a_table(scratch: Scratch, store: SqlStore, tmp_path: Path) -> None:
    source = scratch.items()
    for fmt in ("csv", "parquet"):
        copy = scratch.target()
        store.export(tmp_path / f"items.{fmt}", table=source, fmt=fmt)
        stats = store.append([tmp_path / f"items.{fmt}"], copy, fmt=fmt, transfer_id=f"copy-{fmt}")
        assert (stats.rows, stats.files, stats.already_done) == (4, 1, False)
        assert table_rows(scratch, copy) == ROWS


# ---------------------------------------------------------------------- append


def test_append_csv_and_parquet_files_in_any_column_order(scratch: Scratch, store: SqlStore, tmp_path: Path) -> None:
    table = scratch.target()
    first = write_csv(
        tmp_path / "a.csv",
        ["name", "flag", "id", "created", "amount"],
        [
            ["plain", "true", "1", "2024-01-02 03:04:05.123456", "12.50"],
            ["Zoë 🐍 北京", "false", "2", "1999-12-31 23:59:59", "-0.01"],
        ],
    )
    second = write_csv(
        tmp_path / "b.csv", ["ID", "Name", "AMOUNT", "Created", "Flag"], [["4", "", "", "2024-02-29", "1"]]
    )
    stats = store.append([first, second], table, transfer_id="csv-files")
    assert (stats.rows, stats.files, stats.already_done) == (3, 2, False)
    parquet = tmp_path / "c.parquet"
    pq.write_table(
        pa.table(
            {
                "amount": pa.array([Decimal("1234567890.99")], pa.decimal128(12, 2)),
                "id": pa.array([3], pa.int32()),
                "name": [TRICKY],
                "created": pa.array([None], pa.timestamp("us")),
                "flag": pa.array([None], pa.bool_()),
            }
        ),
        parquet,
    )
    stats = store.append([parquet], table, fmt="parquet", transfer_id="parquet-file")
    assert (stats.rows, stats.files, stats.already_done) == (1, 1, False)
    assert table_rows(scratch, table) == ROWS
    assert scratch.rows(f"SELECT count(*) FROM {table} WHERE loaded IS NOT NULL AND row_id IS NOT NULL") == [(4,)]


def test_bad_row_in_second_file_appends_nothing(scratch: Scratch, store: SqlStore, tmp_path: Path) -> None:
    table = scratch.names()
    good = write_csv(tmp_path / "good.csv", ["id", "name"], [[str(i), f"n{i}"] for i in range(1, 26)])
    bad = write_csv(tmp_path / "bad.csv", ["id", "name"], [["100", "ok"], ["abc", "text in an int column"]])
    with pytest.raises(DatastoreError) as caught:
        store.append([good, bad], table, transfer_id="t-1", batch_rows=10)
    message = str(caught.value)
    assert "bad.csv" in message and "abc" in message and "Nothing was appended" in message
    assert scratch.rows(f"SELECT count(*) FROM {table}") == [(0,)]
    # The failed transfer was not recorded: its retry with a fixed file appends.
    assert store.append([good], table, transfer_id="t-1").rows == 25
    assert scratch.rows(f"SELECT count(*) FROM {table}") == [(25,)]


def test_the_same_transfer_id_appends_once(scratch: Scratch, store: SqlStore, tmp_path: Path) -> None:
    table = scratch.names()
    source = write_csv(tmp_path / "a.csv", ["id", "name"], [["1", "a"], ["2", "b"]])
    first = store.append([source], table, transfer_id="run-42/step")
    second = store.append([source], table, transfer_id="run-42/step")
    assert (first.rows, first.files, first.already_done) == (2, 1, False)
    assert (second.rows, second.files, second.already_done) == (2, 0, True)
    assert scratch.rows(f"SELECT count(*) FROM {table}") == [(2,)]
    assert store.append([source], table, transfer_id="run-43/step").rows == 2
    assert scratch.rows(f"SELECT count(*) FROM {table}") == [(4,)]
    rows = "`rows`" if scratch.kind == MY else "rows"  # a reserved word in MariaDB
    assert scratch.rows(f"SELECT transfer_id, {rows} FROM {scratch.name}.aml_transfer_log ORDER BY transfer_id") == [
        ("run-42/step", 2),
        ("run-43/step", 2),
    ]


def test_unknown_or_missing_columns_are_named(scratch: Scratch, store: SqlStore, tmp_path: Path) -> None:
    table = scratch.target()
    short = table.split(".")[1]
    unknown = write_csv(tmp_path / "unknown.csv", ["id", "nmae", "colour"], [["1", "x", "red"]])
    with pytest.raises(DatastoreError, match=rf"'nmae', 'colour' are not in table .*{short}"):
        store.append([unknown], table, transfer_id="u")
    missing = write_csv(tmp_path / "missing.csv", ["name"], [["x"]])
    with pytest.raises(DatastoreError, match=rf"'id', 'amount', 'created', 'flag' of table .*{short}.* missing"):
        store.append([missing], table, transfer_id="m")
    ragged = write_csv(tmp_path / "ragged.csv", ["id", "name"], [["1", "x", "extra"]])
    with pytest.raises(DatastoreError, match=r"ragged\.csv line 2: 3 fields"):
        store.append([ragged], scratch.names(), transfer_id="r")
    with pytest.raises(DatastoreError, match="no such file"):
        store.append([tmp_path / "nope.csv"], table, transfer_id="n")
    assert scratch.rows(f"SELECT count(*) FROM {table}") == [(0,)]


# ---------------------------------------------------------------------- identity


def test_identity_follows_the_content(scratch: Scratch, store: SqlStore) -> None:
    table = scratch.items()
    query = f"SELECT id, name FROM {table} WHERE id >= :p0"
    before = store.identity(table=table)
    query_before = store.identity(query=query, params=[2])
    assert before["rows"] == 4 and (before.get("md5") or before.get("checksum"))
    assert store.identity(table=table) == before
    assert store.identity(query=query, params=[2]) == query_before
    assert query_before["rows"] == 3 and query_before["sha256"]
    assert store.identity(query=query, params=[3]) != query_before

    scratch.run(f"UPDATE {table} SET name = 'changed' WHERE id = 3")
    assert store.identity(table=table) != before
    assert store.identity(query=query, params=[2]) != query_before
    scratch.run(f"UPDATE {table} SET name = '{TRICKY}' WHERE id = 3")
    assert store.identity(table=table) == before
    assert store.identity(query=query, params=[2]) == query_before

    ident = store.identity(procedure="whatever_proc", params=[1, "a"])
    assert ident["volatile"] is True and ident["params"] == [1, "a"]


# ---------------------------------------------------------------------- retries


def test_a_lost_connection_is_retried(
    scratch: Scratch, store: SqlStore, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    table = scratch.names()
    seq = f"{scratch.name}.calls"
    if scratch.kind == PG:
        kill = (
            "IF nextval('{seq}') = 1 THEN PERFORM pg_terminate_backend(pg_backend_pid()); PERFORM pg_sleep(30); END IF;"
        )
        scratch.run(
            f"CREATE SEQUENCE {seq}",
            f"CREATE FUNCTION {scratch.name}.flaky() RETURNS TABLE(n int) LANGUAGE plpgsql AS $$ BEGIN "
            f"{kill.format(seq=seq)} RETURN QUERY SELECT 1; END $$",
            f"CREATE SEQUENCE {seq}_ins",
            f"CREATE FUNCTION {scratch.name}.kill_once() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN "
            f"{kill.format(seq=seq + '_ins')} RETURN NULL; END $$",
            f"CREATE TRIGGER kill_once BEFORE INSERT ON {table} FOR EACH STATEMENT "
            f"EXECUTE FUNCTION {scratch.name}.kill_once()",
        )
    else:
        kill = "IF NEXTVAL({seq}) = 1 THEN KILL CONNECTION_ID(); END IF;"
        scratch.run(
            f"CREATE SEQUENCE {seq}",
            f"CREATE PROCEDURE {scratch.name}.flaky() BEGIN {kill.format(seq=seq)} SELECT 1 AS n; END",
            f"CREATE SEQUENCE {seq}_ins",
            f"CREATE TRIGGER {scratch.name}.kill_once BEFORE INSERT ON {table} FOR EACH ROW BEGIN "
            f"{kill.format(seq=seq + '_ins')} END",
        )
    with caplog.at_level(logging.WARNING, logger="aml_airflow_provider.storage.sql"):
        stats = store.export(tmp_path / "flaky.csv", procedure="flaky")
        assert stats.rows == 1 and read_csv(tmp_path / "flaky.csv") == [["n"], ["1"]]
        source = write_csv(tmp_path / "a.csv", ["id", "name"], [["1", "a"], ["2", "b"]])
        appended = store.append([source], table, transfer_id="retried")
    assert appended.rows == 2
    assert scratch.rows(f"SELECT id, name FROM {table} ORDER BY id") == [(1, "a"), (2, "b")]
    retries = [r for r in caplog.records if "transient error" in r.getMessage()]
    assert len(retries) == 2 and all("retry 1 of 3" in r.getMessage() for r in retries)
