"""Workspace, experiments, datastores and runs (SDK v1 ``azureml.core``)."""

from aml_airflow_provider.core.datastore import Datastore
from aml_airflow_provider.core.environment import Environment
from aml_airflow_provider.core.experiment import Experiment
from aml_airflow_provider.core.run import Run
from aml_airflow_provider.core.runconfig import RunConfiguration
from aml_airflow_provider.core.workspace import Workspace

__all__ = ["Datastore", "Environment", "Experiment", "Run", "RunConfiguration", "Workspace"]
