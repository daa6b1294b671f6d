"""Azure Machine Learning SDK v1 pipelines on Apache Airflow 3.

Change ``azureml.`` to ``aml_airflow_provider.`` in a v1 pipeline script's imports and it runs on
Airflow. The most used names are also available here. Importing this package does not import
Airflow: ``Workspace.from_config()`` may first have to point ``AIRFLOW_HOME`` at the workspace's
deployment.
"""

from __future__ import annotations

from importlib import import_module
from typing import Any

__version__ = "0.1.0"

_EXPORTS = {
    "Workspace": "aml_airflow_provider.core",
    "Experiment": "aml_airflow_provider.core",
    "Datastore": "aml_airflow_provider.core",
    "Run": "aml_airflow_provider.core",
    "Environment": "aml_airflow_provider.core",
    "RunConfiguration": "aml_airflow_provider.core.runconfig",
    "ComputeTarget": "aml_airflow_provider.core.compute",
    "LocalCompute": "aml_airflow_provider.core.compute",
    "DataReference": "aml_airflow_provider.data.data_reference",
    "DataPath": "aml_airflow_provider.data.datapath",
    "DataPathComputeBinding": "aml_airflow_provider.data.datapath",
    "Pipeline": "aml_airflow_provider.pipeline.core",
    "PipelineData": "aml_airflow_provider.pipeline.core",
    "PipelineParameter": "aml_airflow_provider.pipeline.core",
    "PipelineRun": "aml_airflow_provider.pipeline.core",
    "StepRun": "aml_airflow_provider.pipeline.core",
    "StepSequence": "aml_airflow_provider.pipeline.core",
    "PortDataReference": "aml_airflow_provider.pipeline.core",
    "PublishedPipeline": "aml_airflow_provider.pipeline.core",
    "PipelineEndpoint": "aml_airflow_provider.pipeline.core",
    "PythonScriptStep": "aml_airflow_provider.pipeline.steps",
    "PythonScriptStepOperator": "aml_airflow_provider.operators",
    "PipelineToDag": "aml_airflow_provider.translate",
}

__all__ = ["__version__", *sorted(_EXPORTS)]


def __getattr__(name: str) -> Any:
    # Lazy, so ``import aml_airflow_provider`` stays cheap and Airflow-free.
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'aml_airflow_provider' has no attribute {name!r}")
    return getattr(import_module(module), name)
