"""Step kinds (SDK v1 ``azureml.pipeline.steps``)."""

from aml_airflow_provider.pipeline.steps.adla_step import AdlaStep
from aml_airflow_provider.pipeline.steps.data_transfer_step import DataTransferStep
from aml_airflow_provider.pipeline.steps.databricks_step import DatabricksStep
from aml_airflow_provider.pipeline.steps.python_script_step import PythonScriptStep

__all__ = ["AdlaStep", "DataTransferStep", "DatabricksStep", "PythonScriptStep"]
