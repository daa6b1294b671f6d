"""``Datastore``: named storage registered in a workspace, kept as an Airflow connection (SDK v1 path).

A datastore is the Airflow connection ``aml_datastore.<workspace>.<name>``: its settings in the
connection's extra, its credential (account key, SAS token or connection string) in the password,
so Airflow encrypts it and masks it in logs. Specs, DAG files and XCom only ever hold the name.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Sequence
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING, Any

from aml_airflow_provider._names import check_datastore_name, normalize_datastore_path
from aml_airflow_provider.deployment.base import ConnectionRecord, datastore_conn_id
from aml_airflow_provider.exceptions import DatastoreNotFoundError, UserErrorException
from aml_airflow_provider.storage import CONN_TYPES, DatastoreConfig, open_backend
from aml_airflow_provider.storage.base import local_file_for

if TYPE_CHECKING:
    from aml_airflow_provider.core.workspace import Workspace
    from aml_airflow_provider.data.data_reference import DataReference
    from aml_airflow_provider.storage.base import DatastoreBackend


def _printer(show_progress: bool):
    return (lambda line: print(line, flush=True)) if show_progress else None


class Datastore:
    """A datastore registered in a workspace. ``Datastore(ws, name)`` returns the registered one.

    :param workspace: the workspace
    :param name: the datastore's name; an unknown name raises :class:`DatastoreNotFoundError`
    """

    datastore_type = "Abstract"

    def __new__(cls, workspace: Workspace, name: str | None = None, _record: ConnectionRecord | None = None):
        if name is None:
            return workspace.get_default_datastore()
        record = _record or _lookup(workspace, name)
        kind = DatastoreConfig.from_connection(name, record.conn_type, record.extra, None).kind
        cls = _SQL_CLASSES.get(record.extra.get("sql_kind"), SqlDatastore) if kind == "sql" else _CLASSES[kind]
        self = object.__new__(cls)
        self.workspace = workspace
        self.name = name
        self._record = record
        return self

    def __init__(self, workspace: Workspace, name: str | None = None, _record: ConnectionRecord | None = None):
        # Everything is set up in __new__, which picks the subclass from the registration.
        pass

    # -- lookup and registration ------------------------------------------------------------------
    @staticmethod
    def get(workspace: Workspace, datastore_name: str) -> Datastore:
        """The datastore registered as ``datastore_name``."""
        return Datastore(workspace, datastore_name)

    @staticmethod
    def get_default(workspace: Workspace) -> Datastore:
        return workspace.get_default_datastore()

    @staticmethod
    def register_azure_blob_container(
        workspace: Workspace,
        datastore_name: str,
        container_name: str,
        account_name: str | None = None,
        sas_token: str | None = None,
        account_key: str | None = None,
        protocol: str | None = None,
        endpoint: str | None = None,
        overwrite: bool = False,
        create_if_not_exists: bool = False,
        skip_validation: bool = False,
        blob_cache_timeout: int | None = None,
        grant_workspace_access: bool = False,
        subscription_id: str | None = None,
        resource_group: str | None = None,
        connection_string: str | None = None,
    ) -> AzureBlobDatastore:
        """Register a blob container as a datastore.

        :param workspace: the workspace
        :param datastore_name: the datastore's name (letters, digits, underscores)
        :param container_name: the container
        :param account_name: the storage account (may be omitted with ``connection_string``)
        :param sas_token: a SAS token; or
        :param account_key: an account key; or
        :param connection_string: a storage connection string (this package's addition; handy for
            Azurite). With none of the three, ``DefaultAzureCredential`` is used.
        :param protocol: ``https`` (default) or ``http``
        :param endpoint: v1's storage suffix (``core.windows.net``), or a ``host:port``/URL for an
            emulator, which is then addressed path-style
        :param overwrite: replace an existing registration of that name
        :param create_if_not_exists: create the container if it is missing
        :param skip_validation: do not check that the container can be reached now
        :param blob_cache_timeout: accepted for v1 compatibility; there is no blobfuse cache here
        :param grant_workspace_access: accepted for v1 compatibility; ignored
        :param subscription_id: accepted for v1 compatibility; ignored
        :param resource_group: accepted for v1 compatibility; ignored
        """
        from aml_airflow_provider.storage.blob import (
            blob_account_url,
            ensure_container,
            parse_connection_string,
        )

        check_datastore_name(datastore_name)
        secrets = {"sas_token": sas_token, "account_key": account_key, "connection_string": connection_string}
        given = [k for k, v in secrets.items() if v]
        if len(given) > 1:
            raise UserErrorException(
                f"Datastore '{datastore_name}': give only one of sas_token, account_key or connection_string."
            )
        credential = given[0] if given else "default_azure_credential"
        if connection_string:
            parsed = parse_connection_string(connection_string)
            account_name = account_name or parsed["account_name"]
            account_url = parsed["account_url"]
        else:
            if not account_name:
                raise UserErrorException(f"Datastore '{datastore_name}': account_name is required.")
            account_url = blob_account_url(account_name, protocol, endpoint)
        settings = {
            "container_name": container_name,
            "account_name": account_name,
            "account_url": account_url,
            "credential": credential,
        }
        secret = secrets[credential] if given else None
        if create_if_not_exists:
            ensure_container(settings, secret)
        elif not skip_validation:
            # v1 checked the credential at registration: fail now, not in the middle of a run.
            open_backend(DatastoreConfig(datastore_name, "blob", settings, secret)).check_access()
        return _register(workspace, datastore_name, "blob", settings, secret, overwrite)  # type: ignore[return-value]

    @staticmethod
    def register_local_folder(
        workspace: Workspace, datastore_name: str, path: str | os.PathLike[str], overwrite: bool = False
    ) -> LocalDatastore:
        """Register a folder (local, or a shared filesystem every worker mounts) as a datastore.

        :param workspace: the workspace
        :param datastore_name: the datastore's name
        :param path: the folder; created if missing
        :param overwrite: replace an existing registration of that name
        """
        check_datastore_name(datastore_name)
        root = Path(path).expanduser().resolve()
        root.mkdir(parents=True, exist_ok=True)
        return _register(workspace, datastore_name, "local", {"root": str(root)}, None, overwrite)  # type: ignore[return-value]

    @staticmethod
    def register_azure_sql_database(
        workspace: Workspace,
        datastore_name: str,
        server_name: str,
        database_name: str,
        tenant_id: str | None = None,
        client_id: str | None = None,
        client_secret: str | None = None,
        resource_url: str | None = None,
        authority_url: str | None = None,
        endpoint: str | None = None,
        overwrite: bool = False,
        username: str | None = None,
        password: str | None = None,
        subscription_id: str | None = None,
        resource_group: str | None = None,
        grant_workspace_access: bool = False,
        port_number: int | None = None,
        **kwargs: Any,
    ) -> SqlDatastore:
        """Register an Azure SQL Database (SQL Server) as a datastore, with SQL authentication.

        :param server_name: the server (``myserver`` means ``myserver.database.windows.net``), or a host name
        :param database_name: the database
        :param username: the SQL login
        :param password: its password; kept only in the Airflow connection
        :param endpoint: the server suffix (default ``database.windows.net``)
        :param port_number: default 1433
        :param tenant_id: service-principal authentication is not available here (give username/password)
        """
        if client_id or client_secret or tenant_id:
            raise UserErrorException(
                f"Datastore '{datastore_name}': service-principal authentication to Azure SQL is not available "
                "here; register with username= and password= (SQL authentication)."
            )
        return _register_sql(
            workspace, datastore_name, "sqlserver", server_name, database_name, username, password,
            port_number or 1433, endpoint or "database.windows.net", True, overwrite,
        )  # fmt: skip

    @staticmethod
    def register_azure_postgre_sql(
        workspace: Workspace,
        datastore_name: str,
        server_name: str,
        database_name: str,
        user_id: str,
        user_password: str | None,
        port_number: int | None = None,
        endpoint: str | None = None,
        overwrite: bool = False,
        enforce_ssl: bool = True,
        **kwargs: Any,
    ) -> SqlDatastore:
        """Register an Azure Database for PostgreSQL (or any PostgreSQL server) as a datastore.

        :param server_name: the server (``myserver`` means ``myserver.postgres.database.azure.com``), or a
            host name or address (``127.0.0.1``)
        :param database_name: the database
        :param user_id: the user
        :param user_password: the password (``None`` for trust authentication); kept only in the connection
        :param port_number: default 5432
        :param endpoint: the server suffix (default ``postgres.database.azure.com``)
        :param enforce_ssl: require TLS (v1's default); a local server usually needs ``False``
        """
        return _register_sql(
            workspace, datastore_name, "postgresql", server_name, database_name, user_id, user_password,
            port_number or 5432, endpoint or "postgres.database.azure.com", enforce_ssl, overwrite,
        )  # fmt: skip

    @staticmethod
    def register_azure_my_sql(
        workspace: Workspace,
        datastore_name: str,
        server_name: str,
        database_name: str,
        user_id: str,
        user_password: str | None,
        port_number: int | None = None,
        endpoint: str | None = None,
        overwrite: bool = False,
        **kwargs: Any,
    ) -> SqlDatastore:
        """Register an Azure Database for MySQL (or any MySQL/MariaDB server) as a datastore.

        :param server_name: the server (``myserver`` means ``myserver.mysql.database.azure.com``), or a host name
        :param database_name: the database
        :param user_id: the user
        :param user_password: the password; kept only in the connection
        :param port_number: default 3306
        :param endpoint: the server suffix (default ``mysql.database.azure.com``)
        """
        return _register_sql(
            workspace, datastore_name, "mysql", server_name, database_name, user_id, user_password,
            port_number or 3306, endpoint or "mysql.database.azure.com", False, overwrite,
        )  # fmt: skip

    @staticmethod
    def register_azure_file_share(workspace: Workspace, datastore_name: str, *args: Any, **kwargs: Any):
        """Not available: Azure Files is an SMB share. Mount it on the workers and use ``register_local_folder``."""
        raise UserErrorException(
            f"Datastore '{datastore_name}': Azure File shares are not supported. Mount the share on every "
            "Airflow worker and register the mount point with Datastore.register_local_folder()."
        )

    def unregister(self) -> None:
        """Remove the registration (the data stays where it is)."""
        self.workspace._deployment.delete_connection(datastore_conn_id(self.workspace.name, self.name))

    def set_as_default(self) -> None:
        self.workspace.set_default_datastore(self.name)

    # -- data -------------------------------------------------------------------------------------
    @cached_property
    def _backend(self) -> DatastoreBackend:
        record = self._record
        return open_backend(DatastoreConfig.from_connection(self.name, record.conn_type, record.extra, record.password))

    def upload(
        self,
        src_dir: str | os.PathLike[str],
        target_path: str | None = None,
        overwrite: bool = False,
        show_progress: bool = True,
    ) -> DataReference:
        """Upload a folder tree to ``target_path`` (default: the root); existing files are kept unless ``overwrite``.

        :return: a ``DataReference`` to ``target_path``
        """
        src = Path(src_dir)
        if not src.is_dir():
            raise UserErrorException(f"Datastore '{self.name}': upload source {str(src)!r} is not a folder.")
        files = sorted(f for f in src.rglob("*") if f.is_file())
        target = normalize_datastore_path(target_path, what="target_path")
        return self._upload_pairs(
            [(f, "/".join(p for p in (target, f.relative_to(src).as_posix()) if p)) for f in files],
            target,
            overwrite,
            show_progress,
        )

    def upload_files(
        self,
        files: Sequence[str | os.PathLike[str]],
        relative_root: str | os.PathLike[str] | None = None,
        target_path: str | None = None,
        overwrite: bool = False,
        show_progress: bool = True,
    ) -> DataReference:
        """Upload files; each lands at ``target_path`` + its path relative to ``relative_root``.

        :param relative_root: default: the folder common to all files; every file must lie under it
        :return: a ``DataReference`` to ``target_path``
        """
        paths = [Path(f).resolve() for f in files]
        for p in paths:
            if not p.is_file():
                raise UserErrorException(f"Datastore '{self.name}': {str(p)!r} is not a file.")
        if not paths:
            raise UserErrorException(f"Datastore '{self.name}': upload_files needs at least one file.")
        root = Path(relative_root).resolve() if relative_root else Path(os.path.commonpath([p.parent for p in paths]))
        target = normalize_datastore_path(target_path, what="target_path")
        pairs = []
        for p in paths:
            if not p.is_relative_to(root):
                raise UserErrorException(
                    f"Datastore '{self.name}': {str(p)!r} is not under relative_root {str(root)!r}."
                )
            pairs.append((p, "/".join(x for x in (target, p.relative_to(root).as_posix()) if x)))
        return self._upload_pairs(pairs, target, overwrite, show_progress)

    def _upload_pairs(
        self, pairs: Iterable[tuple[Path, str]], target: str, overwrite: bool, show_progress: bool
    ) -> DataReference:
        from aml_airflow_provider.data.data_reference import DataReference

        pairs = list(pairs)
        report = _printer(show_progress)
        stats = self._backend.upload_many(pairs, overwrite=overwrite, report=report)
        if report:
            skipped = f", skipped {stats.skipped} that already exist (overwrite=False)" if stats.skipped else ""
            report(f"Uploaded {stats.files} files to {self._backend.describe(target)}{skipped}")
        return DataReference(self, path_on_datastore=target)

    def download(
        self,
        target_path: str | os.PathLike[str],
        prefix: str | None = None,
        overwrite: bool = False,
        show_progress: bool = True,
    ) -> int:
        """Download the files under ``prefix`` (a file or folder) into ``target_path``, keeping their full paths.

        Existing local files are kept unless ``overwrite``.

        :return: the number of files downloaded
        """
        prefix = normalize_datastore_path(prefix, what="prefix")
        target = Path(target_path)
        files = self._backend.list_files(prefix)
        report = _printer(show_progress)
        # Every name is checked before anything is written: a hostile blob name must not land outside target.
        pairs = [(f.path, local_file_for(target, f.path, source=self._backend.describe(prefix))) for f in files]
        stats = self._backend.download_many(pairs, overwrite=overwrite, report=report)
        if report:
            report(f"Downloaded {stats.files} files from {self._backend.describe(prefix)} to {target}")
        return stats.files

    def path(self, path: str | None = None, data_reference_name: str | None = None) -> DataReference:
        from aml_airflow_provider.data.data_reference import DataReference

        return DataReference(self, data_reference_name=data_reference_name, path_on_datastore=path)

    def as_mount(self) -> DataReference:
        return self.path().as_mount()

    def as_download(self, path_on_compute: str | None = None) -> DataReference:
        return self.path().as_download(path_on_compute)

    def as_upload(self, path_on_compute: str | None = None) -> DataReference:
        return self.path().as_upload(path_on_compute)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Datastore) and (self.workspace.name, self.name) == (
            other.workspace.name,
            other.name,
        )

    def __hash__(self) -> int:
        return hash((self.workspace.name, self.name))

    def __repr__(self) -> str:
        return f"{type(self).__name__}(workspace={self.workspace.name!r}, name={self.name!r})"


class AzureBlobDatastore(Datastore):
    """A blob container."""

    datastore_type = "AzureBlob"

    @property
    def container_name(self) -> str:
        return self._record.extra["container_name"]

    @property
    def account_name(self) -> str:
        return self._record.extra["account_name"]

    @property
    def credential_type(self) -> str:
        return self._record.extra["credential"]


class LocalDatastore(Datastore):
    """A folder on a filesystem every worker can reach."""

    datastore_type = "Local"

    @property
    def root(self) -> str:
        return self._record.extra["root"]


class SqlDatastore(Datastore):
    """A SQL database: a source or destination of a DataTransferStep only."""

    datastore_type = "AzureSqlDatabase"

    @property
    def server_name(self) -> str:
        return self._record.extra["server_name"]

    @property
    def database_name(self) -> str:
        return self._record.extra["database_name"]

    @property
    def sql_kind(self) -> str:
        return self._record.extra["sql_kind"]

    @cached_property
    def _sql(self) -> Any:
        from aml_airflow_provider.storage import open_sql

        record = self._record
        return open_sql(DatastoreConfig.from_connection(self.name, record.conn_type, record.extra, record.password))


class AzureSqlDatabaseDatastore(SqlDatastore):
    """Azure SQL Database (SQL Server)."""

    datastore_type = "AzureSqlDatabase"


class AzurePostgreSqlDatastore(SqlDatastore):
    """Azure Database for PostgreSQL (any PostgreSQL server)."""

    datastore_type = "AzurePostgreSql"


class AzureMySqlDatastore(SqlDatastore):
    """Azure Database for MySQL (any MySQL or MariaDB server)."""

    datastore_type = "AzureMySql"


_CLASSES: dict[str, type[Datastore]] = {"blob": AzureBlobDatastore, "local": LocalDatastore, "sql": SqlDatastore}
_SQL_CLASSES: dict[str, type[SqlDatastore]] = {
    "sqlserver": AzureSqlDatabaseDatastore,
    "postgresql": AzurePostgreSqlDatastore,
    "mysql": AzureMySqlDatastore,
}


def _register_sql(
    workspace: Workspace,
    name: str,
    sql_kind: str,
    server_name: str,
    database_name: str,
    user: str | None,
    password: str | None,
    port: int,
    endpoint: str,
    ssl: bool,
    overwrite: bool,
) -> SqlDatastore:
    check_datastore_name(name)
    for what, value in (("server_name", server_name), ("database_name", database_name), ("user", user)):
        if not isinstance(value, str) or not value.strip():
            raise UserErrorException(f"Datastore '{name}': {what} is required.")
    if isinstance(port, bool) or not isinstance(port, int) or not 0 < port < 65536:
        raise UserErrorException(f"Datastore '{name}': port_number {port!r} is not a TCP port.")
    # v1 took the server's short name and added the service's suffix; a dotted name or address is a host.
    host = (
        server_name
        if ("." in server_name or ":" in server_name or server_name == "localhost")
        else (f"{server_name}.{endpoint}")
    )
    settings = {
        "sql_kind": sql_kind,
        "server_name": host,
        "port": port,
        "database_name": database_name,
        "user_id": user,
        "ssl": bool(ssl),
    }
    return _register(workspace, name, "sql", settings, password or None, overwrite)  # type: ignore[return-value]


def _lookup(workspace: Workspace, name: str) -> ConnectionRecord:
    check_datastore_name(name)
    record = workspace._deployment.get_connection(datastore_conn_id(workspace.name, name))
    if record is None:
        known = ", ".join(sorted(workspace.datastores)) or "none"
        raise DatastoreNotFoundError(
            f"No datastore named '{name}' in workspace '{workspace.name}' (registered: {known}). "
            "Register it with Datastore.register_azure_blob_container() or Datastore.register_local_folder()."
        )
    return record


def _register(
    workspace: Workspace, name: str, kind: str, settings: dict[str, Any], secret: str | None, overwrite: bool
) -> Datastore:
    conn_id = datastore_conn_id(workspace.name, name)
    record = ConnectionRecord(
        conn_id=conn_id,
        conn_type=CONN_TYPES[kind],
        extra=settings,
        password=secret,
        description=f"AML datastore '{name}' of workspace '{workspace.name}'",
    )
    existing = workspace._deployment.get_connection(conn_id)
    if existing is not None and not overwrite:
        same = (existing.conn_type, dict(existing.extra), existing.password) == (
            record.conn_type,
            settings,
            secret,
        )
        if not same:
            raise UserErrorException(
                f"Datastore '{name}' is already registered in workspace '{workspace.name}' with other "
                "settings; pass overwrite=True to replace it."
            )
        return Datastore(workspace, name, _record=existing)
    workspace._deployment.put_connection(record)
    return Datastore(workspace, name, _record=record)
