"""Pipeline building blocks and runs (SDK v1 ``azureml.pipeline.core``)."""

from aml_airflow_provider.pipeline.core.builder import (
    InputPortBinding,
    PipelineData,
    PipelineStep,
    StepSequence,
)
from aml_airflow_provider.pipeline.core.graph import PipelineParameter, PortDataReference
from aml_airflow_provider.pipeline.core.pipeline import Pipeline
from aml_airflow_provider.pipeline.core.published import PipelineEndpoint, PublishedPipeline
from aml_airflow_provider.pipeline.core.run import PipelineRun, StepRun, StepRunOutput
from aml_airflow_provider.pipeline.core.schedule import Schedule, ScheduleRecurrence

__all__ = [
    "InputPortBinding",
    "Pipeline",
    "PipelineEndpoint",
    "PipelineData",
    "PipelineParameter",
    "PipelineRun",
    "PipelineStep",
    "PortDataReference",
    "PublishedPipeline",
    "Schedule",
    "ScheduleRecurrence",
    "StepRun",
    "StepRunOutput",
    "StepSequence",
]
