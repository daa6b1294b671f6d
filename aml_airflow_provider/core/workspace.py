"""``Workspace``: the root object, bound to one Airflow deployment (SDK v1 path).

In v1 a workspace was an Azure resource. Here it is a record in an Airflow deployment (the
connection ``aml_workspace.<name>``), together with its datastores (``aml_datastore.<ws>.<name>``),
and a ``config.json`` that says where that deployment is (its ``AIRFLOW_HOME``). The config file
never holds a credential.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

from aml_airflow_provider._names import check_workspace_name
from aml_airflow_provider.deployment import (
    ConnectionRecord,
    get_deployment,
    workspace_conn_id,
)
from aml_airflow_provider.deployment.base import (
    COMPUTE_CONN_PREFIX,
    DATASTORE_CONN_PREFIX,
    WORKSPACE_CONN_TYPE,
)
from aml_airflow_provider.deployment.embedded import bind_airflow_home, default_airflow_home
from aml_airflow_provider.exceptions import UserErrorException, WorkspaceException

if TYPE_CHECKING:
    from aml_airflow_provider.core.compute import ComputeTarget
    from aml_airflow_provider.core.datastore import Datastore

DEFAULT_BLOB_DATASTORE = "workspaceblobstore"
DEFAULT_FILE_DATASTORE = "workspacefilestore"
#: Where ``from_config`` looks under each folder, in v1's order.
_CONFIG_CANDIDATES = (
    Path(".azureml") / "config.json",
    Path("config.json"),
    Path("aml_config") / "config.json",
)


class Workspace:
    """An existing workspace: ``Workspace(subscription_id, resource_group, workspace_name)``.

    :param subscription_id: kept for v1 compatibility (informational here)
    :param resource_group: kept for v1 compatibility (informational here)
    :param workspace_name: the workspace's name
    :param auth: for a deployment reached over HTTP, an
        :class:`~aml_airflow_provider.core.authentication.AirflowAuthentication` (default: from
        ``AML_AIRFLOW_USERNAME``/``AML_AIRFLOW_PASSWORD``)
    :param airflow_home: the deployment's ``AIRFLOW_HOME``, used in-process (default: this process's)
    :param airflow_url: the deployment's API server, when it is reached over HTTP instead
    """

    def __init__(
        self,
        subscription_id: str | None = None,
        resource_group: str | None = None,
        workspace_name: str | None = None,
        auth: Any = None,
        _location: str | None = None,
        _disable_service_check: bool = False,
        _workspace_id: str | None = None,
        sku: str = "basic",
        tags: dict[str, str] | None = None,
        _cloud: str = "AzureCloud",
        *,
        airflow_home: str | os.PathLike[str] | None = None,
        airflow_url: str | None = None,
        _deployment: Any = None,
    ) -> None:
        if workspace_name is None:
            raise UserErrorException("Workspace(...) needs workspace_name; or use Workspace.from_config().")
        self._name = check_workspace_name(workspace_name)
        self._deployment = _deployment or get_deployment(airflow_home, airflow_url, auth)
        record = self._deployment.get_connection(workspace_conn_id(self._name))
        if record is None:
            raise WorkspaceException(
                f"Workspace '{self._name}' does not exist in the Airflow deployment at {_where(self._deployment)}. "
                f"Create it with Workspace.create('{self._name}')."
            )
        self._settings: dict[str, Any] = dict(record.extra)

    # -- creation and lookup ----------------------------------------------------------------------
    @staticmethod
    def create(
        name: str,
        auth: Any = None,
        subscription_id: str | None = None,
        resource_group: str | None = None,
        location: str | None = None,
        create_resource_group: bool = True,
        sku: str = "basic",
        tags: dict[str, str] | None = None,
        friendly_name: str | None = None,
        storage_account: str | None = None,
        exist_ok: bool = False,
        show_output: bool = True,
        *,
        airflow_home: str | os.PathLike[str] | None = None,
        airflow_url: str | None = None,
        **kwargs: Any,
    ) -> Workspace:
        """Create a workspace in the Airflow deployment at ``airflow_home`` (default: ``$AIRFLOW_HOME``),
        or in the one whose API server is ``airflow_url``.

        The metadata database is created if it is missing, so a fresh ``AIRFLOW_HOME`` needs no set-up.

        :param name: workspace name
        :param subscription_id: informational (kept in the config file, as v1)
        :param resource_group: informational
        :param location: informational
        :param friendly_name: informational
        :param storage_account: an Azure Storage connection string, or an account URL (then
            ``DefaultAzureCredential`` authenticates). With it, ``workspaceblobstore`` is a container
            in that account; without it, ``workspaceblobstore`` and ``workspacefilestore`` are local
            folders under ``AIRFLOW_HOME`` (the embedded default). v1 ARM resource ids are not accepted.
        :param exist_ok: return the existing workspace instead of failing
        :param show_output: print what was created
        :param airflow_home: the deployment's ``AIRFLOW_HOME``
        :param airflow_url: the deployment's API server (then ``auth``, or ``AML_AIRFLOW_USERNAME`` and
            ``AML_AIRFLOW_PASSWORD``, log in; ``storage_account`` is required, as the client cannot create
            folders on the server)
        :param kwargs: other v1 arguments (``key_vault``, ``app_insights``, ``container_registry``,
            ``create_resource_group``, ``sku``, ...) are accepted and have no meaning here
        """
        check_workspace_name(name)
        storage_kind = _storage_account_kind(storage_account)
        if airflow_url and storage_kind is None:
            raise UserErrorException(
                "A workspace on a remote Airflow needs storage_account (a connection string or account URL): "
                "its default datastores cannot be folders on this machine."
            )
        deployment = get_deployment(airflow_home, airflow_url, auth)
        conn_id = workspace_conn_id(name)
        if deployment.get_connection(conn_id) is not None:
            if not exist_ok:
                raise WorkspaceException(
                    f"Workspace '{name}' already exists in {_where(deployment)}; pass exist_ok=True to use it."
                )
            ws = Workspace(subscription_id, resource_group, name, _deployment=deployment)
            ws._write_home_config()
            return ws

        settings = {
            "subscription_id": subscription_id,
            "resource_group": resource_group,
            "location": location,
            "friendly_name": friendly_name or name,
            "tags": dict(tags or {}),
            "default_datastore": DEFAULT_BLOB_DATASTORE,
        }
        deployment.put_connection(
            ConnectionRecord(
                conn_id=conn_id,
                conn_type=WORKSPACE_CONN_TYPE,
                extra=settings,
                description=f"AML workspace '{name}'",
            )
        )
        ws = Workspace(subscription_id, resource_group, name, _deployment=deployment)
        try:
            ws._register_default_datastores(storage_account, storage_kind)
        except BaseException:
            # A half-created workspace would make the next create(exist_ok=True) silently unusable.
            for record in deployment.list_connections(f"{DATASTORE_CONN_PREFIX}{name}."):
                deployment.delete_connection(record.conn_id)
            deployment.delete_connection(conn_id)
            raise
        ws._write_home_config()
        if show_output:
            default = ws.get_default_datastore()
            print(f"Created workspace '{name}' in {_where(deployment)}; default datastore: {default!r}")
        return ws

    def _register_default_datastores(self, storage_account: str | None, kind: str | None) -> None:
        from aml_airflow_provider.core.datastore import Datastore

        if self._deployment.airflow_home is not None:
            local_root = self._deployment.airflow_home / "aml_datastores" / self._name
            Datastore.register_local_folder(self, DEFAULT_FILE_DATASTORE, local_root / DEFAULT_FILE_DATASTORE)
        if storage_account is None:
            Datastore.register_local_folder(self, DEFAULT_BLOB_DATASTORE, local_root / DEFAULT_BLOB_DATASTORE)
            return
        container = _default_container_name(self._name)
        if kind == "connection_string":
            Datastore.register_azure_blob_container(
                self,
                DEFAULT_BLOB_DATASTORE,
                container,
                connection_string=storage_account,
                create_if_not_exists=True,
            )
        else:
            from aml_airflow_provider.storage.blob import account_from_url

            # No secret: DefaultAzureCredential authenticates.
            Datastore.register_azure_blob_container(
                self,
                DEFAULT_BLOB_DATASTORE,
                container,
                account_name=account_from_url(storage_account),
                endpoint=storage_account,
                create_if_not_exists=True,
            )

    @staticmethod
    def get(
        name: str,
        auth: Any = None,
        subscription_id: str | None = None,
        resource_group: str | None = None,
        *,
        airflow_home: str | os.PathLike[str] | None = None,
        airflow_url: str | None = None,
        **kwargs: Any,
    ) -> Workspace:
        """An existing workspace, by name (v1 ``Workspace.get``).

        :param name: the workspace name
        :param auth: credentials for a remote Airflow (:class:`AirflowAuthentication`)
        :param airflow_home: the embedded deployment's home (default: ``$AIRFLOW_HOME``)
        :param airflow_url: a remote Airflow's URL; the workspace is looked up there
        """
        return Workspace(
            subscription_id, resource_group, name, auth, airflow_home=airflow_home, airflow_url=airflow_url
        )

    @staticmethod
    def from_config(
        path: str | os.PathLike[str] | None = None,
        auth: Any = None,
        _logger: Any = None,
        _file_name: str | None = None,
    ) -> Workspace:
        """Load the workspace named in a ``config.json``.

        As v1, ``path`` may be the file or a folder; without it the search starts in the current
        folder and walks up, looking in ``.azureml/``, the folder itself and ``aml_config/``. If nothing
        is found, the workspace written into ``$AIRFLOW_HOME/.azureml/config.json`` by
        ``Workspace.create`` is used. The process is bound to the workspace's ``AIRFLOW_HOME``.
        """
        config_file = _find_config(path, _file_name)
        try:
            config = json.loads(config_file.read_text(encoding="utf-8"))
            name = config["workspace_name"]
        except (OSError, ValueError, KeyError) as exc:
            raise WorkspaceException(f"{config_file} is not a workspace config file: {exc}") from exc
        if config.get("airflow_url"):
            if _logger is None:
                print(f"Loaded workspace '{name}' from {config_file} (Airflow at {config['airflow_url']})", flush=True)
            return Workspace(
                config.get("subscription_id"),
                config.get("resource_group"),
                name,
                auth,
                airflow_url=config["airflow_url"],
            )
        home = Path(config.get("airflow_home") or default_airflow_home())
        bind_airflow_home(home)
        if _logger is None:
            print(f"Loaded workspace '{name}' from {config_file} (AIRFLOW_HOME={home})", flush=True)
        return Workspace(config.get("subscription_id"), config.get("resource_group"), name, airflow_home=home)

    def write_config(self, path: str | os.PathLike[str] | None = None, file_name: str | None = None) -> Path:
        """Write ``config.json`` (no credentials) to ``path/.azureml/`` (default: the current folder)."""
        folder = Path(path) if path is not None else Path.cwd()
        target = folder / ".azureml" / (file_name or "config.json")
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(json.dumps(self._config(), indent=2) + "\n", encoding="utf-8")
        return target

    def _config(self) -> dict[str, Any]:
        return {
            "subscription_id": self.subscription_id,
            "resource_group": self.resource_group,
            "workspace_name": self._name,
            **(
                {"airflow_home": str(self._deployment.airflow_home)}
                if self._deployment.airflow_home is not None
                else {"airflow_url": self._deployment.base_url}
            ),
        }

    def _write_home_config(self) -> None:
        # The deployment's own pointer, so from_config() works from any folder (e.g. in DAG files).
        home = self._deployment.airflow_home
        if home is not None and not (home / ".azureml" / "config.json").exists():
            self.write_config(self._deployment.airflow_home)

    # -- properties -------------------------------------------------------------------------------
    @property
    def name(self) -> str:
        return self._name

    @property
    def subscription_id(self) -> str | None:
        return self._settings.get("subscription_id")

    @property
    def resource_group(self) -> str | None:
        return self._settings.get("resource_group")

    @property
    def location(self) -> str | None:
        return self._settings.get("location")

    @property
    def tags(self) -> dict[str, str]:
        return dict(self._settings.get("tags") or {})

    @property
    def airflow_home(self) -> Path | None:
        """The deployment's AIRFLOW_HOME when it is used in-process, else ``None``."""
        return self._deployment.airflow_home

    def get_details(self) -> dict[str, Any]:
        return {
            **self._config(),
            "location": self.location,
            "friendly_name": self._settings.get("friendly_name"),
        }

    # -- datastores and computes ------------------------------------------------------------------
    @property
    def datastores(self) -> dict[str, Datastore]:
        """Every registered datastore, by name."""
        from aml_airflow_provider.core.datastore import Datastore

        prefix = f"{DATASTORE_CONN_PREFIX}{self._name}."
        return {
            rec.conn_id[len(prefix) :]: Datastore(self, rec.conn_id[len(prefix) :], _record=rec)
            for rec in self._deployment.list_connections(prefix)
        }

    def get_default_datastore(self) -> Datastore:
        from aml_airflow_provider.core.datastore import Datastore

        return Datastore(self, self._settings["default_datastore"])

    def set_default_datastore(self, name: str) -> None:
        """Make ``name`` the datastore that outputs use when nothing else is given."""
        from aml_airflow_provider.core.datastore import Datastore

        Datastore(self, name)  # raises if unknown
        self._settings["default_datastore"] = name
        record = self._deployment.get_connection(workspace_conn_id(self._name))
        assert record is not None
        self._deployment.put_connection(
            ConnectionRecord(record.conn_id, record.conn_type, self._settings, None, record.description)
        )

    @property
    def compute_targets(self) -> dict[str, ComputeTarget]:
        """Every registered compute target, by name."""
        from aml_airflow_provider.core.compute import ComputeTarget

        prefix = f"{COMPUTE_CONN_PREFIX}{self._name}."
        return {
            rec.conn_id[len(prefix) :]: ComputeTarget(self, rec.conn_id[len(prefix) :])
            for rec in self._deployment.list_connections(prefix)
        }

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Workspace) and (self._name, _where(self._deployment)) == (
            other._name,
            _where(other._deployment),
        )

    def __hash__(self) -> int:
        return hash((self._name, _where(self._deployment)))

    def __repr__(self) -> str:
        return f"Workspace.create(name={self._name!r}, deployment={_where(self._deployment)!r})"


def _where(deployment: Any) -> str:
    """A deployment's location: its AIRFLOW_HOME, or its API server's URL."""
    return str(deployment.airflow_home) if deployment.airflow_home is not None else deployment.base_url


def _storage_account_kind(storage_account: str | None) -> str | None:
    """``connection_string``, ``account_url`` or ``None``; anything else is refused before anything is created."""
    if storage_account is None:
        return None
    if isinstance(storage_account, str) and ("AccountName=" in storage_account or "BlobEndpoint=" in storage_account):
        return "connection_string"
    if isinstance(storage_account, str) and storage_account.startswith(("https://", "http://")):
        return "account_url"
    raise UserErrorException(
        "storage_account must be an Azure Storage connection string or an account URL "
        "(https://<account>.blob.core.windows.net); ARM resource ids are not supported."
    )


def _default_container_name(workspace: str) -> str:
    # Container names: 3-63 lowercase letters, digits and single hyphens.
    stem = "".join(ch if ch.isalnum() else "-" for ch in workspace.lower()).strip("-")
    while "--" in stem:
        stem = stem.replace("--", "-")
    return f"azureml-blobstore-{stem}"[:63].rstrip("-")


def _find_config(path: str | os.PathLike[str] | None, file_name: str | None) -> Path:
    names = [Path(c.parent) / file_name for c in _CONFIG_CANDIDATES] if file_name else list(_CONFIG_CANDIDATES)
    if path is not None:
        p = Path(path)
        if p.is_file():
            return p
        folders = [p]
    else:
        cwd = Path.cwd().resolve()
        folders = [cwd, *cwd.parents]
    for folder in folders:
        for name in names:
            if (folder / name).is_file():
                return folder / name
    fallback = default_airflow_home() / ".azureml" / "config.json"
    if path is None and fallback.is_file():
        return fallback
    where = str(path) if path is not None else f"{Path.cwd()} or its parents, nor {fallback}"
    raise WorkspaceException(
        f"No workspace config.json found in {where}. Create a workspace with Workspace.create(...) "
        "and save it with ws.write_config()."
    )
