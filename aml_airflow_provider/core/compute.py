"""Compute targets (SDK v1 path).

Python steps run on the Airflow worker that picks up their task (``LocalCompute``, or
``compute_target=None``); an ``AmlCompute`` is an Airflow pool and a worker queue; a
``DockerCompute`` runs them in containers. A ``DatabricksCompute`` is attached as an Airflow
Databricks connection (or marked local, for Spark on the worker), an ``AdlaCompute`` likewise;
a ``DataFactoryCompute`` is a name only.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar
from urllib.parse import urlsplit

from aml_airflow_provider.deployment.base import ConnectionRecord, compute_conn_id, compute_pool_name
from aml_airflow_provider.exceptions import ComputeTargetException

if TYPE_CHECKING:
    from aml_airflow_provider.core.workspace import Workspace

LOCAL_COMPUTE_NAME = "local"
#: Connection type of a compute registration that is not itself a service connection.
COMPUTE_CONN_TYPE = "aml_compute"
#: The compute class of a registration, in its connection's extra.
COMPUTE_TYPE_KEY = "aml_compute_type"
_COMPUTE_NAME = re.compile(r"[A-Za-z][A-Za-z0-9-]{1,15}")


def check_compute_name(name: object) -> str:
    """v1's rule for compute names: 2 to 16 letters, digits or hyphens, starting with a letter."""
    if not isinstance(name, str) or not _COMPUTE_NAME.fullmatch(name):
        raise ComputeTargetException(
            f"Compute name {name!r} is invalid: use 2 to 16 letters, digits or hyphens, starting with a letter."
        )
    if name == LOCAL_COMPUTE_NAME:
        raise ComputeTargetException("'local' is the name of the Airflow worker itself; choose another compute name.")
    return name


class ComputeTarget:
    """A registered compute target: ``ComputeTarget(workspace=ws, name=...)`` finds it or raises.

    :param workspace: the workspace
    :param name: the compute target's name
    """

    type = "Abstract"
    #: The compute classes ``ComputeTarget(ws, name)`` can return, by their ``type``.
    _classes: ClassVar[dict[str, type[ComputeTarget]]] = {}

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        ComputeTarget._classes.setdefault(cls.type, cls)

    def __new__(cls, workspace: Workspace | None = None, name: str | None = None, *args: Any, **kwargs: Any):
        # v1's ComputeTarget(ws, name) returns the registered target's own class (DatabricksCompute, ...).
        record = None
        if workspace is not None and name not in (None, LOCAL_COMPUTE_NAME):
            record = workspace._deployment.get_connection(compute_conn_id(workspace.name, str(name)))
            if record is not None and cls is ComputeTarget:
                cls = ComputeTarget._classes.get(record.extra.get(COMPUTE_TYPE_KEY), ComputeTarget)
        target = super().__new__(cls)
        target._record = record
        return target

    def __init__(self, workspace: Workspace, name: str) -> None:
        self.workspace = workspace
        self.name = name
        if name == LOCAL_COMPUTE_NAME:
            return
        if self._record is None:
            raise ComputeTargetException(
                f"ComputeTargetNotFound: compute target '{name}' not found in workspace '{workspace.name}'."
            )
        registered = self._record.extra.get(COMPUTE_TYPE_KEY)
        if type(self) is not ComputeTarget and registered != self.type:
            raise ComputeTargetException(
                f"Compute target '{name}' in workspace '{workspace.name}' is a {registered or 'compute'} target, "
                f"not a {type(self).__name__}."
            )
        self._load(self._record)

    def _load(self, record: ConnectionRecord) -> None:
        """Read the subclass's settings from its registration."""

    @staticmethod
    def create(workspace: Workspace, name: str, provisioning_configuration: Any) -> ComputeTarget:
        """Register a compute made from ``<Class>.provisioning_configuration(...)`` (``DataFactoryCompute``).

        :param workspace: the workspace
        :param name: the compute's name in the workspace
        :param provisioning_configuration: what ``provisioning_configuration`` returned
        """
        if not isinstance(provisioning_configuration, AttachConfiguration):
            raise ComputeTargetException(
                f"Cannot create compute target '{name}': provisioned clusters are not supported by this release. "
                "Leave compute_target=None (or use LocalCompute) to run steps on the Airflow workers."
            )
        return ComputeTarget.attach(workspace, name, provisioning_configuration)

    @staticmethod
    def attach(workspace: Workspace, name: str, attach_configuration: Any) -> ComputeTarget:
        """Register an existing compute (``DatabricksCompute.attach_configuration(...)``) under ``name``.

        :param workspace: the workspace
        :param name: the compute's name in the workspace
        :param attach_configuration: what ``<Class>.attach_configuration`` returned
        """
        if not isinstance(attach_configuration, AttachConfiguration):
            raise ComputeTargetException(
                f"Cannot attach compute target '{name}': give what DatabricksCompute.attach_configuration(...) "
                f"returns, not {type(attach_configuration).__name__}."
            )
        name = check_compute_name(name)
        conn_id = compute_conn_id(workspace.name, name)
        workspace._deployment.put_connection(attach_configuration.connection(conn_id, name))
        attach_configuration.provision(workspace, name)
        return ComputeTarget(workspace, name)

    def detach(self) -> None:
        """Remove the registration (a connection it only refers to is left alone)."""
        self.workspace._deployment.delete_connection(compute_conn_id(self.workspace.name, self.name))

    delete = detach

    def wait_for_completion(self, show_output: bool = False, *args: Any, **kwargs: Any) -> None:
        """Nothing to wait for: a registered target is ready."""

    def get_status(self) -> str:
        return "Succeeded"

    def __repr__(self) -> str:
        return f"{type(self).__name__}(name={self.name!r})"


class LocalCompute(ComputeTarget):
    """Run the step as a subprocess of the Airflow worker, in the worker's Python.

    :param workspace: optional, for symmetry with other targets
    :param name: always ``local``
    """

    type = "Local"

    def __init__(self, workspace: Workspace | None = None, name: str = LOCAL_COMPUTE_NAME) -> None:
        self.workspace = workspace  # type: ignore[assignment]
        self.name = LOCAL_COMPUTE_NAME


class AttachConfiguration:
    """What ``<Compute>.attach_configuration`` returns: turns into the compute's Airflow connection."""

    def connection(self, conn_id: str, name: str) -> ConnectionRecord:
        raise NotImplementedError

    def provision(self, workspace: Workspace, name: str) -> None:
        """Make what the compute needs in the deployment besides its connection (an ``AmlCompute``'s pool)."""


#: v1's max_nodes when provisioning_configuration() is not given one.
DEFAULT_MAX_NODES = 4


class AmlComputeProvisioningConfiguration(AttachConfiguration):
    """What :meth:`AmlCompute.provisioning_configuration` returns (see there)."""

    def __init__(
        self, vm_size: str, vm_priority: str, min_nodes: int, max_nodes: int, idle_seconds: int | None, description: str
    ) -> None:
        self.vm_size, self.vm_priority = vm_size, vm_priority
        self.min_nodes, self.max_nodes, self.idle_seconds_before_scaledown = min_nodes, max_nodes, idle_seconds
        self.description = description

    def connection(self, conn_id: str, name: str) -> ConnectionRecord:
        return ConnectionRecord(
            conn_id,
            COMPUTE_CONN_TYPE,
            {
                COMPUTE_TYPE_KEY: AmlCompute.type,
                "vm_size": self.vm_size,
                "vm_priority": self.vm_priority,
                "min_nodes": self.min_nodes,
                "max_nodes": self.max_nodes,
                "idle_seconds_before_scaledown": self.idle_seconds_before_scaledown,
            },
            description=self.description
            or f"AML compute '{name}': at most {self.max_nodes} steps at once, on workers of queue '{name}'",
        )

    def provision(self, workspace: Workspace, name: str) -> None:
        workspace._deployment.put_pool(
            compute_pool_name(workspace.name, name),
            self.max_nodes,
            f"AmlCompute '{name}' of workspace '{workspace.name}': one slot per node (max_nodes)",
        )


def _whole_number(value: object, what: str, *, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ComputeTargetException(f"AmlCompute {what} must be a whole number >= {minimum}, not {value!r}.")
    return value


class AmlCompute(ComputeTarget):
    """An AML compute cluster, as Airflow runs it: an Airflow pool of ``max_nodes`` slots and a worker queue.

    A step with ``compute_target=`` this cluster gets the pool (so at most ``max_nodes`` of its
    steps run at once, across every pipeline) and the queue named like the cluster (so with the
    CeleryExecutor it runs on the workers started with ``airflow celery worker --queues <name>``).
    ``vm_size`` and the other settings are recorded, and shown by :meth:`get_status`.
    """

    type = "AmlCompute"

    def _load(self, record: ConnectionRecord) -> None:
        extra = record.extra
        self.vm_size = str(extra.get("vm_size") or "")
        self.vm_priority = str(extra.get("vm_priority") or "dedicated")
        self.min_nodes = int(extra.get("min_nodes") or 0)
        self.max_nodes = int(extra.get("max_nodes") or DEFAULT_MAX_NODES)
        self.idle_seconds_before_scaledown = extra.get("idle_seconds_before_scaledown")

    @property
    def pool(self) -> str:
        """The Airflow pool that holds one slot per node."""
        return compute_pool_name(self.workspace.name, self.name)

    @property
    def queue(self) -> str:
        """The executor queue of the cluster's steps (its name)."""
        return self.name

    @staticmethod
    def provisioning_configuration(
        vm_size: str = "",
        vm_priority: str = "dedicated",
        min_nodes: int = 0,
        max_nodes: int | None = None,
        idle_seconds_before_scaledown: int | None = None,
        admin_username: str | None = None,
        admin_user_password: str | None = None,
        admin_user_ssh_key: str | None = None,
        vnet_resourcegroup_name: str | None = None,
        vnet_name: str | None = None,
        subnet_name: str | None = None,
        tags: dict[str, str] | None = None,
        description: str | None = None,
        remote_login_port_public_access: str = "NotSpecified",
        identity_type: str | None = None,
        identity_id: list[str] | None = None,
        location: str | None = None,
        enable_node_public_ip: bool = True,
    ) -> AmlComputeProvisioningConfiguration:
        """For ``ComputeTarget.create(ws, name, ...)``: v1's signature.

        :param vm_size: recorded (the workers' machines are the deployment's)
        :param vm_priority: ``dedicated`` or ``lowpriority``; recorded
        :param min_nodes: recorded; at most ``max_nodes``
        :param max_nodes: the pool's slots: how many of the cluster's steps run at once (default 4, as v1)
        :param idle_seconds_before_scaledown: recorded
        :param description: the registration's description
        :raises ComputeTargetException: node counts that are not whole numbers, or ``min_nodes > max_nodes``

        The administrator account, network, identity and location settings have no meaning for an
        Airflow pool; they are accepted so v1 code runs, and not stored (the password in particular).
        """
        max_nodes = _whole_number(DEFAULT_MAX_NODES if max_nodes is None else max_nodes, "max_nodes", minimum=1)
        min_nodes = _whole_number(min_nodes, "min_nodes", minimum=0)
        if min_nodes > max_nodes:
            raise ComputeTargetException(f"AmlCompute min_nodes ({min_nodes}) is larger than max_nodes ({max_nodes}).")
        if vm_priority not in ("dedicated", "lowpriority"):
            raise ComputeTargetException(
                f"AmlCompute vm_priority must be 'dedicated' or 'lowpriority', not {vm_priority!r}."
            )
        idle = (
            None
            if idle_seconds_before_scaledown is None
            else _whole_number(idle_seconds_before_scaledown, "idle_seconds_before_scaledown", minimum=0)
        )
        return AmlComputeProvisioningConfiguration(vm_size, vm_priority, min_nodes, max_nodes, idle, description or "")

    def update(
        self,
        min_nodes: int | None = None,
        max_nodes: int | None = None,
        idle_seconds_before_scaledown: int | None = None,
    ) -> None:
        """Change the node counts (the pool is resized at once; running steps keep their slots).

        :param min_nodes: new minimum (recorded)
        :param max_nodes: new maximum: the pool's slots
        :param idle_seconds_before_scaledown: recorded
        """
        idle = (
            self.idle_seconds_before_scaledown
            if idle_seconds_before_scaledown is None
            else idle_seconds_before_scaledown
        )
        config = AmlCompute.provisioning_configuration(
            self.vm_size,
            self.vm_priority,
            self.min_nodes if min_nodes is None else min_nodes,
            self.max_nodes if max_nodes is None else max_nodes,
            idle,
        )
        ComputeTarget.attach(self.workspace, self.name, config)
        self._load(config.connection("", self.name))

    def get_status(self) -> AmlComputeStatus:
        """The pool's use now: running steps count as running nodes, queued ones as preparing."""
        pool = self.workspace._deployment.get_pool(self.pool)
        if pool is None:
            raise ComputeTargetException(
                f"AmlCompute '{self.name}': its Airflow pool '{self.pool}' is gone; create the compute again "
                "(ComputeTarget.create) to restore it."
            )
        return AmlComputeStatus(
            provisioning_state="Succeeded",
            vm_size=self.vm_size,
            vm_priority=self.vm_priority,
            scale_settings={
                "minNodeCount": self.min_nodes,
                "maxNodeCount": pool.slots,
                "nodeIdleTimeBeforeScaleDown": self.idle_seconds_before_scaledown,
            },
            current_node_count=pool.running,
            target_node_count=pool.running + pool.queued + pool.scheduled,
            node_state_counts={
                "idleNodeCount": pool.open,
                "runningNodeCount": pool.running,
                "preparingNodeCount": pool.queued + pool.scheduled,
                "unusableNodeCount": 0,
                "leavingNodeCount": 0,
                "preemptedNodeCount": 0,
            },
            pool=self.pool,
            queue=self.queue,
            workers=self.workspace._deployment.queue_workers(self.queue),
        )

    @property
    def status(self) -> AmlComputeStatus:
        """v1's ``compute_target.status``: :meth:`get_status`."""
        return self.get_status()

    def wait_for_completion(
        self,
        show_output: bool = False,
        min_node_count: int | None = None,
        timeout_in_minutes: int = 25,
        is_delete_operation: bool = False,
    ) -> None:
        """Ready as soon as its pool exists (there is nothing to provision); with ``show_output``, says so."""
        status = self.get_status()
        if show_output:
            print(f"{status.provisioning_state}\nAmlCompute wait for completion finished")

    def detach(self) -> None:
        """Remove the registration and the pool."""
        self.workspace._deployment.delete_pool(self.pool)
        super().detach()

    delete = detach


@dataclass(frozen=True)
class AmlComputeStatus:
    """v1's ``AmlComputeStatus``, read off the cluster's Airflow pool.

    :param pool: the Airflow pool behind the cluster
    :param queue: the executor queue its steps go to
    :param workers: the Celery workers serving that queue (``None`` when the executor cannot tell:
        not Celery, or a deployment reached over REST)
    """

    provisioning_state: str
    vm_size: str
    vm_priority: str
    scale_settings: dict[str, Any]
    current_node_count: int
    target_node_count: int
    node_state_counts: dict[str, int]
    pool: str
    queue: str
    workers: list[str] | None = None
    allocation_state: str = "Steady"
    errors: tuple[str, ...] = ()

    def serialize(self) -> dict[str, Any]:
        """The status as v1 printed it (``print(compute_target.status.serialize())``)."""
        return {
            "currentNodeCount": self.current_node_count,
            "targetNodeCount": self.target_node_count,
            "nodeStateCounts": dict(self.node_state_counts),
            "allocationState": self.allocation_state,
            "errors": list(self.errors) or None,
            "provisioningState": self.provisioning_state,
            "vmPriority": self.vm_priority,
            "vmSize": self.vm_size,
            "scaleSettings": dict(self.scale_settings),
            "airflowPool": self.pool,
            "queue": self.queue,
            "queueWorkers": self.workers,
        }


@dataclass(frozen=True)
class DatabricksAttachConfiguration(AttachConfiguration):
    """A Databricks workspace to attach (see :meth:`DatabricksCompute.attach_configuration`)."""

    resource_group: str | None
    workspace_name: str | None
    host: str | None = None
    port: int | None = None
    scheme: str | None = None
    connection_id: str | None = None
    local: bool = False
    access_token: str | None = field(default=None, repr=False)

    def connection(self, conn_id: str, name: str) -> ConnectionRecord:
        extra = {
            COMPUTE_TYPE_KEY: DatabricksCompute.type,
            "resource_group": self.resource_group,
            "workspace_name": self.workspace_name,
        }
        if self.local or self.connection_id:
            # Not a Databricks connection itself: local Spark, or a pointer to one the user keeps.
            extra.update({"local": self.local, "databricks_conn_id": self.connection_id})
            return ConnectionRecord(conn_id, COMPUTE_CONN_TYPE, extra, description=f"AML compute '{name}' (Databricks)")
        # The registration *is* the Databricks connection: host and token live only here.
        return ConnectionRecord(
            conn_id,
            "databricks",
            extra,
            password=self.access_token,
            description=f"AML compute '{name}' (Databricks workspace {self.workspace_name})",
            host=self.host,
            port=self.port,
            schema=self.scheme,
        )


def _parse_databricks_host(host: object) -> tuple[str, int | None, str]:
    """``adb-1.2.azuredatabricks.net``, ``https://adb-...`` or ``http://127.0.0.1:8765`` -> (host, port, scheme)."""
    if not isinstance(host, str) or not host.strip():
        raise ComputeTargetException(
            "DatabricksCompute.attach_configuration needs host= (the workspace URL, e.g. "
            "'https://adb-1234567890123456.7.azuredatabricks.net'): SDK v1 derived it from Azure, here it is given."
        )
    text = host.strip().rstrip("/")
    parts = urlsplit(text if "://" in text else f"https://{text}")
    try:
        port = parts.port
    except ValueError:
        port = -1
    if parts.scheme not in ("http", "https") or not parts.hostname or parts.path or parts.query or port == -1:
        raise ComputeTargetException(
            f"Databricks host {host!r} is not a workspace host or URL (e.g. 'adb-123.4.azuredatabricks.net' or "
            "'http://127.0.0.1:8765')."
        )
    return parts.hostname, port, parts.scheme


class DatabricksCompute(ComputeTarget):
    """An attached Databricks workspace, or Spark on the Airflow worker (``local=True``).

    :ivar resource_group: as given when attached (informational)
    :ivar workspace_name: as given when attached (informational)
    :ivar is_local: steps run with ``spark-submit --master local[*]`` on the worker
    :ivar databricks_conn_id: the Airflow Databricks connection steps on it use
    """

    type = "Databricks"

    def _load(self, record: ConnectionRecord) -> None:
        self.resource_group = record.extra.get("resource_group")
        self.workspace_name = record.extra.get("workspace_name")
        self.is_local = bool(record.extra.get("local"))
        self.databricks_conn_id = None if self.is_local else record.extra.get("databricks_conn_id") or record.conn_id
        self.host = record.host

    @staticmethod
    def attach_configuration(
        resource_group: str | None = None,
        workspace_name: str | None = None,
        access_token: str | None = None,
        *,
        host: str | None = None,
        connection_id: str | None = None,
        local: bool = False,
    ) -> DatabricksAttachConfiguration:
        """Describe a Databricks workspace to attach with :meth:`ComputeTarget.attach`.

        :param resource_group: the workspace's Azure resource group (informational)
        :param workspace_name: the Databricks workspace's name (informational)
        :param access_token: a personal access token; kept only in the Airflow connection
        :param host: the workspace host or URL; a URL's scheme and port are honoured
        :param connection_id: use this existing Airflow Databricks connection instead of host and token
        :param local: run steps on this compute with local Spark on the Airflow worker (for development)
        """
        if local:
            if access_token or host or connection_id:
                raise ComputeTargetException(
                    "DatabricksCompute.attach_configuration(local=True) runs Spark on the Airflow worker: "
                    "give no host, access_token or connection_id."
                )
            return DatabricksAttachConfiguration(resource_group, workspace_name, local=True)
        if connection_id is not None:
            if access_token or host:
                raise ComputeTargetException(
                    f"DatabricksCompute.attach_configuration: connection_id={connection_id!r} already holds the host "
                    "and token; do not also give host or access_token."
                )
            if not isinstance(connection_id, str) or not connection_id.strip():
                raise ComputeTargetException("DatabricksCompute.attach_configuration: connection_id must be a name.")
            return DatabricksAttachConfiguration(resource_group, workspace_name, connection_id=connection_id)
        if not isinstance(access_token, str) or not access_token.strip():
            raise ComputeTargetException(
                "DatabricksCompute.attach_configuration needs access_token (a Databricks personal access token), "
                "or connection_id= naming an Airflow Databricks connection, or local=True."
            )
        hostname, port, scheme = _parse_databricks_host(host)
        return DatabricksAttachConfiguration(
            resource_group, workspace_name, hostname, port, scheme, access_token=access_token.strip()
        )


#: Connection type of an attached Data Lake Analytics account.
ADLA_CONN_TYPE = "aml_adla"
_ADLA_ACCOUNT = re.compile(r"[a-z0-9]{3,24}")


@dataclass(frozen=True)
class AdlaAttachConfiguration(AttachConfiguration):
    """A Data Lake Analytics account to attach (see :meth:`AdlaCompute.attach_configuration`)."""

    resource_group: str | None
    account_name: str
    endpoint: str
    credential: str
    tenant_id: str | None = None
    client_id: str | None = None
    authority: str | None = None
    secret: str | None = field(default=None, repr=False)

    def connection(self, conn_id: str, name: str) -> ConnectionRecord:
        extra = {
            COMPUTE_TYPE_KEY: AdlaCompute.type,
            "resource_group": self.resource_group,
            "account_name": self.account_name,
            "endpoint": self.endpoint,
            "credential": self.credential,
            "tenant_id": self.tenant_id,
            "client_id": self.client_id,
            "authority": self.authority,
        }
        return ConnectionRecord(
            conn_id,
            ADLA_CONN_TYPE,
            {k: v for k, v in extra.items() if v is not None},
            password=self.secret,
            description=f"AML compute '{name}' (Data Lake Analytics account {self.account_name})",
        )


class AdlaCompute(ComputeTarget):
    """An attached Azure Data Lake Analytics account (retired by Microsoft on 2024-02-29; any service
    with its job API can stand in).

    :ivar account_name: the account
    :ivar endpoint: the job service's base URL
    :ivar resource_group: as given when attached (informational)
    """

    type = "ADLAnalytics"

    def _load(self, record: ConnectionRecord) -> None:
        self.account_name = record.extra.get("account_name")
        self.endpoint = record.extra.get("endpoint")
        self.resource_group = record.extra.get("resource_group")
        self.conn_id = record.conn_id

    @staticmethod
    def attach_configuration(
        resource_group: str | None,
        account_name: str,
        endpoint: str | None = None,
        tenant_id: str | None = None,
        client_id: str | None = None,
        client_secret: str | None = None,
        access_token: str | None = None,
        *,
        authority: str | None = None,
    ) -> AdlaAttachConfiguration:
        """Describe a Data Lake Analytics account to attach with :meth:`ComputeTarget.attach`.

        Credentials, in order: a service principal (``tenant_id``, ``client_id``, ``client_secret``), a
        static bearer ``access_token``, else ``DefaultAzureCredential`` on the worker. Secrets are kept
        only in the Airflow connection.

        :param resource_group: the account's resource group (informational)
        :param account_name: the account name (3-24 lowercase letters and digits)
        :param endpoint: the job service's base URL (default ``https://<account>.azuredatalakeanalytics.net``)
        :param tenant_id: the service principal's tenant
        :param client_id: the service principal's application id
        :param client_secret: the service principal's secret
        :param access_token: a bearer token for ``https://datalake.azure.net/`` (it cannot be refreshed)
        :param authority: the Entra ID authority host for a sovereign cloud (default: the public cloud)
        """
        if not isinstance(account_name, str) or not _ADLA_ACCOUNT.fullmatch(account_name):
            raise ComputeTargetException(
                f"AdlaCompute: account_name {account_name!r} must be 3-24 lowercase letters and digits."
            )
        if endpoint is None:
            endpoint = f"https://{account_name}.azuredatalakeanalytics.net"
        parts = urlsplit(endpoint if isinstance(endpoint, str) else "")
        if parts.scheme not in ("http", "https") or not parts.hostname or parts.path.strip("/") or parts.query:
            raise ComputeTargetException(
                f"AdlaCompute: endpoint {endpoint!r} must be the job service's base URL, e.g. "
                f"'https://{account_name}.azuredatalakeanalytics.net' or 'http://127.0.0.1:8766'."
            )
        principal = [tenant_id, client_id, client_secret]
        if access_token is not None:
            if any(principal):
                raise ComputeTargetException(
                    "AdlaCompute: give a service principal (tenant_id, client_id, client_secret) or access_token, "
                    "not both."
                )
            if not isinstance(access_token, str) or not access_token.strip():
                raise ComputeTargetException("AdlaCompute: access_token must be a non-empty string.")
            credential, secret = "access_token", access_token.strip()
        elif any(principal):
            if not all(isinstance(v, str) and v.strip() for v in principal):
                missing = [
                    n for n, v in zip(("tenant_id", "client_id", "client_secret"), principal, strict=True) if not v
                ]
                raise ComputeTargetException(
                    f"AdlaCompute: a service principal needs tenant_id, client_id and client_secret "
                    f"(missing: {', '.join(missing)})."
                )
            credential, secret = "service_principal", client_secret
        else:
            credential, secret = "default_azure_credential", None
        return AdlaAttachConfiguration(
            resource_group,
            account_name,
            endpoint.rstrip("/"),
            credential,
            tenant_id=tenant_id,
            client_id=client_id,
            authority=authority,
            secret=secret,
        )


class DataFactoryProvisioningConfiguration(AttachConfiguration):
    """What :meth:`DataFactoryCompute.provisioning_configuration` returns: a name for the worker's copier."""

    def connection(self, conn_id: str, name: str) -> ConnectionRecord:
        return ConnectionRecord(
            conn_id,
            COMPUTE_CONN_TYPE,
            {COMPUTE_TYPE_KEY: DataFactoryCompute.type},
            description=f"AML compute '{name}' (DataTransferStep copies run on the Airflow worker)",
        )


class DataFactoryCompute(ComputeTarget):
    """v1's Data Factory compute. DataTransferStep copies run on the Airflow worker here, so this is a
    name only: v1 code that finds or creates one keeps working."""

    type = "DataFactory"

    @staticmethod
    def provisioning_configuration(compute_location: str | None = None) -> DataFactoryProvisioningConfiguration:
        """For ``ComputeTarget.create(ws, name, ...)``; ``compute_location`` is accepted and ignored."""
        return DataFactoryProvisioningConfiguration()


_MEMORY = re.compile(r"\d+[bkmgBKMG]?")
_DOCKER_SETTINGS = ("docker_url", "docker_conn_id", "image", "mem_limit", "cpus", "shm_size", "network_mode")


class DockerAttachConfiguration(AttachConfiguration):
    """What :meth:`DockerCompute.attach_configuration` returns (see there)."""

    def __init__(self, **settings: Any) -> None:
        self.settings = {k: v for k, v in settings.items() if v is not None}

    def connection(self, conn_id: str, name: str) -> ConnectionRecord:
        where = self.settings.get("docker_url", "the worker's Docker engine")
        return ConnectionRecord(
            conn_id,
            COMPUTE_CONN_TYPE,
            {COMPUTE_TYPE_KEY: DockerCompute.type, **self.settings},
            description=f"AML compute '{name}': PythonScriptSteps run in containers on {where}",
        )


class DockerCompute(ComputeTarget):
    """PythonScriptSteps run in Docker containers, through ``apache-airflow-providers-docker``.

    The image is the step environment's ``docker.base_image`` (``docker.enabled``), else this
    compute's ``image``, else v1's default CPU image. See :mod:`aml_airflow_provider.runtime.container`
    for what the container gets.
    """

    type = "Docker"

    def _load(self, record: ConnectionRecord) -> None:
        self.settings = {k: record.extra[k] for k in _DOCKER_SETTINGS if record.extra.get(k) is not None}

    @staticmethod
    def attach_configuration(
        docker_url: str = "unix://var/run/docker.sock",
        docker_conn_id: str | None = None,
        image: str | None = None,
        mem_limit: str | None = None,
        cpus: float | None = None,
        shm_size: str | None = None,
        network_mode: str | None = None,
    ) -> DockerAttachConfiguration:
        """For ``ComputeTarget.attach(ws, name, ...)`` (``provisioning_configuration`` is the same).

        :param docker_url: the Docker engine the workers reach (``unix://...``, ``tcp://host:2376``)
        :param docker_conn_id: an Airflow ``docker`` connection for registry login or TLS, optional
        :param image: the image of steps whose environment names none
        :param mem_limit: memory per container, e.g. ``"4g"``
        :param cpus: CPUs per container (fractions allowed)
        :param shm_size: ``/dev/shm`` per container, e.g. ``"1g"``
        :param network_mode: ``bridge``, ``host``, ``none`` or a network's name
        :raises ComputeTargetException: a setting Docker would refuse
        """
        if not re.match(r"^(unix|tcp|ssh|npipe|http|https)://", str(docker_url)):
            raise ComputeTargetException(
                f"DockerCompute docker_url {docker_url!r} is not a Docker engine address: use unix:///path, "
                "tcp://host:port or ssh://user@host."
            )
        for what, value in (("mem_limit", mem_limit), ("shm_size", shm_size)):
            if value is not None and not _MEMORY.fullmatch(str(value)):
                raise ComputeTargetException(
                    f"DockerCompute {what} {value!r} is not a size: give bytes or a number with b, k, m or g ('4g')."
                )
        if cpus is not None and (isinstance(cpus, bool) or not isinstance(cpus, int | float) or cpus <= 0):
            raise ComputeTargetException(f"DockerCompute cpus must be a positive number, not {cpus!r}.")
        return DockerAttachConfiguration(
            docker_url=docker_url,
            docker_conn_id=docker_conn_id,
            image=image,
            mem_limit=mem_limit,
            cpus=cpus,
            shm_size=shm_size,
            network_mode=network_mode,
        )

    provisioning_configuration = attach_configuration


def compute_placement(targets: Iterable[ComputeTarget]) -> dict[str, dict[str, Any]]:
    """Operator arguments by compute name: an ``AmlCompute``'s ``pool`` and ``queue``, a ``DockerCompute``'s
    ``container`` settings (no secret: a registry login stays in its Airflow connection).

    Recorded in the pipeline spec, so the DAG file places the tasks without reading the registry.
    Other computes are left out: their steps run where Airflow puts them.

    :param targets: the registered computes the pipeline's steps name (as ``ComputeTarget(ws, name)`` found them)
    """
    placement: dict[str, dict[str, Any]] = {}
    for target in targets:
        if isinstance(target, AmlCompute):
            placement[target.name] = {"pool": target.pool, "queue": target.queue}
        elif isinstance(target, DockerCompute):
            placement[target.name] = {"container": dict(target.settings)}
    return dict(sorted(placement.items()))


def compute_name(target: object, where: str) -> str | None:
    """The name a step records for its ``compute_target`` argument (``None`` means the worker)."""
    if target is None:
        return None
    if isinstance(target, ComputeTarget):
        return target.name
    if isinstance(target, str):
        return target
    if isinstance(target, tuple) and len(target) == 2 and isinstance(target[0], str):
        return target[0]
    raise ComputeTargetException(
        f"{where}: compute_target must be a ComputeTarget, a compute name or None, not {type(target).__name__}."
    )


__all__ = [
    "AdlaCompute",
    "AmlCompute",
    "AmlComputeProvisioningConfiguration",
    "AmlComputeStatus",
    "ComputeTarget",
    "AdlaAttachConfiguration",
    "AttachConfiguration",
    "DataFactoryCompute",
    "DatabricksAttachConfiguration",
    "DatabricksCompute",
    "DockerAttachConfiguration",
    "DockerCompute",
    "LocalCompute",
]
