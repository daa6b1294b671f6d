"""The example pipeline as an ordinary Airflow DAG file: ``PipelineToDag`` on the SDK v1 model.

Parsing this file builds the pipeline model (it checks that the step scripts exist and looks up the
workspace's datastores) and translates it; no step script is imported. The workspace is the one
bound to this deployment's ``AIRFLOW_HOME`` (``Workspace.create`` records it there), so point
Airflow's dags folder at this directory after running ``make demo`` once with the same AIRFLOW_HOME.
"""

from compare_models.pipeline import build_pipeline

from aml_airflow_provider import PipelineToDag, Workspace

ws = Workspace.from_config(_logger=False)
dag = PipelineToDag(build_pipeline(ws)).to_dag("compare_models", schedule=None, tags=["aml", "example"])
