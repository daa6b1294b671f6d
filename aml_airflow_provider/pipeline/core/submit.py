"""Submitting a pipeline: check the parameters, write the experiment's DAG, trigger a run."""

from __future__ import annotations

import dataclasses
import warnings
from pathlib import Path
from typing import TYPE_CHECKING, Any

from aml_airflow_provider.dagfile import DagDocument
from aml_airflow_provider.exceptions import PipelineParameterError
from aml_airflow_provider.parameters import resolve_parameter_values, run_tags
from aml_airflow_provider.spec import REGENERATE_PARAM, TAGS_CONF_KEY, PipelineSpec
from aml_airflow_provider.uris import DatastoreUri

if TYPE_CHECKING:
    from aml_airflow_provider.core.experiment import Experiment
    from aml_airflow_provider.core.workspace import Workspace
    from aml_airflow_provider.pipeline.core.pipeline import Pipeline
    from aml_airflow_provider.pipeline.core.run import PipelineRun

#: v1 ``submit`` arguments that mean nothing here; accepted so migrated calls keep working.
_IGNORED = {"credential_passthrough", "enable_email_notification", "parent_run_id", "show_output"}


def submit_pipeline(
    experiment: Experiment,
    pipeline: Pipeline,
    *,
    tags: dict[str, str] | None = None,
    pipeline_parameters: dict[str, Any] | None = None,
    continue_on_step_failure: bool = False,
    regenerate_outputs: bool = False,
    **kwargs: Any,
) -> PipelineRun:
    """Run ``pipeline`` as a run of ``experiment``; see :meth:`Experiment.submit`."""
    from aml_airflow_provider.pipeline.core.run import PipelineRun

    if "pipeline_params" in kwargs:
        warnings.warn("pipeline_params is deprecated; use pipeline_parameters.", DeprecationWarning, stacklevel=3)
        pipeline_parameters = {**kwargs.pop("pipeline_params"), **(pipeline_parameters or {})}
    unknown = set(kwargs) - _IGNORED
    if unknown:
        raise TypeError(f"submit got unexpected keyword arguments: {sorted(unknown)}")
    workspace = experiment.workspace
    spec = dataclasses.replace(pipeline.spec, continue_on_step_failure=bool(continue_on_step_failure))
    spec = pin_snapshots(spec, workspace)
    conf = resolve_parameter_values(spec, pipeline_parameters)
    for param in spec.parameters:
        if param.type == "datapath":
            store = DatastoreUri.parse(conf[param.name]).datastore
            if store not in workspace.datastores:
                raise PipelineParameterError(
                    f"Pipeline parameter '{param.name}': datastore '{store}' is not registered in workspace "
                    f"'{workspace.name}'."
                )
    if tags:
        conf[TAGS_CONF_KEY] = run_tags(tags)
    if regenerate_outputs:
        conf[REGENERATE_PARAM] = True
    deployment = workspace._deployment
    document = DagDocument(
        dag_id=experiment.dag_id,
        kind="experiment",
        dag_kwargs={"tags": ["aml", "aml-experiment"], "description": spec.description},
        spec=spec,
        meta={"experiment": experiment.name, "workspace": workspace.name},
    )
    deployment.write_dag(document, title=f"AML experiment '{experiment.name}' of workspace '{workspace.name}'")
    run_id = deployment.trigger(experiment.dag_id, conf)
    print(f"Submitted PipelineRun {run_id} (experiment '{experiment.name}')", flush=True)
    return PipelineRun(experiment, run_id, _spec=spec)


def pin_snapshots(spec: PipelineSpec, workspace: Workspace) -> PipelineSpec:
    """Take each step's source snapshot now (once per folder) and name it in the spec.

    Steps then run from exactly the code that was submitted, whatever happens to the folder later.
    """
    from aml_airflow_provider.core.datastore import Datastore
    from aml_airflow_provider.runtime.snapshot import take

    store = Datastore(workspace, spec.default_datastore)._backend
    taken: dict[str, str] = {}
    steps = []
    for step in spec.steps:
        source = step.config.get("source_directory")
        if source is None:
            steps.append(step)
            continue
        if source not in taken:
            taken[source] = take(Path(source), store)
        steps.append(dataclasses.replace(step, config={**step.config, "snapshot": taken[source]}))
    return dataclasses.replace(spec, steps=tuple(steps))
