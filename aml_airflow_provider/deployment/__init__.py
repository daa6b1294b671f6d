"""Where pipelines run: an Airflow deployment, reached in-process (embedded) or, later, over its REST API."""

from aml_airflow_provider.deployment.base import (
    ConnectionRecord,
    Deployment,
    RunRecord,
    TaskRecord,
    compute_conn_id,
    datastore_conn_id,
    workspace_conn_id,
)
from aml_airflow_provider.deployment.embedded import EmbeddedDeployment, default_airflow_home, get_deployment

__all__ = [
    "ConnectionRecord",
    "Deployment",
    "EmbeddedDeployment",
    "RunRecord",
    "TaskRecord",
    "compute_conn_id",
    "datastore_conn_id",
    "default_airflow_home",
    "get_deployment",
    "workspace_conn_id",
]
