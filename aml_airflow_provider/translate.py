"""``PipelineToDag``: a pipeline (or its spec) as an ordinary Airflow DAG.

One task per step, built by the operator the registry names for the step's kind; edges from data
dependencies and ``run_after``; pipeline parameters as DAG ``Param`` s with a JSON-schema type.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from aml_airflow_provider.exceptions import UserErrorException
from aml_airflow_provider.operators.registry import operator_for
from aml_airflow_provider.spec import PARAMETER_TYPES, PLACEMENT_KEY, REGENERATE_PARAM, ParameterSpec, PipelineSpec

if TYPE_CHECKING:
    from airflow.sdk import DAG, BaseOperator, Param

    from aml_airflow_provider.pipeline.core.pipeline import Pipeline

#: Pattern of a ``datapath`` parameter's value.
DATAPATH_PATTERN = r"^azureml://datastores/[A-Za-z0-9_]+/paths/.*$"


def _param(spec: ParameterSpec) -> Param:
    from airflow.sdk import Param

    schema: dict[str, Any] = {"type": PARAMETER_TYPES[spec.type]}
    if spec.type == "datapath":
        schema["pattern"] = DATAPATH_PATTERN
        schema["format"] = "uri"
    description = spec.description or (
        "A datastore location: azureml://datastores/<name>/paths/<path>" if spec.type == "datapath" else None
    )
    return Param(spec.default, description=description, title=spec.name, **schema)


def _doc_md(spec: PipelineSpec) -> str:
    lines = [
        spec.description or "Azure ML SDK v1 pipeline",
        "",
        "| step | kind | inputs | outputs |",
        "|---|---|---|---|",
    ]
    for step in spec.steps:
        ins = ", ".join(i.name for i in step.inputs) or "-"
        outs = ", ".join(o.name for o in step.outputs) or "-"
        lines.append(f"| {step.name} | {step.kind} | {ins} | {outs} |")
    # Lets a client of a remote deployment see when Airflow has parsed this version of the pipeline.
    lines += ["", f"Pipeline spec `{spec.fingerprint}`"]
    return "\n".join(lines)


def build_dag(spec: PipelineSpec, dag_id: str, schedule: Any = None, **dag_kwargs: Any) -> DAG:
    """Build the DAG of a pipeline spec.

    :param spec: the pipeline spec
    :param dag_id: the DAG id
    :param schedule: the DAG's schedule (default: none, runs when triggered)
    :param dag_kwargs: other ``DAG`` arguments; they override the defaults chosen here
    """
    from airflow.sdk import DAG, Param

    kwargs: dict[str, Any] = {
        "catchup": False,
        "tags": ["aml"],
        "doc_md": _doc_md(spec),
        "description": spec.description,
        "params": {
            **{p.name: _param(p) for p in spec.parameters},
            REGENERATE_PARAM: Param(
                False,
                type="boolean",
                title="regenerate_outputs",
                description="Run every step, reusing no earlier results (v1's regenerate_outputs).",
            ),
        },
    }
    kwargs.update({k: v for k, v in dag_kwargs.items() if v is not None})
    placement = spec.extra.get(PLACEMENT_KEY) or {}
    with DAG(dag_id, schedule=schedule, **kwargs) as dag:
        tasks: dict[str, BaseOperator] = {}
        for step in spec.steps:  # upstream first, so every upstream task already exists
            operator = operator_for(step.kind)
            # An AmlCompute's pool caps its steps at max_nodes, its queue picks the workers; a
            # DockerCompute's settings say where the step's container runs.
            where = placement.get(step.compute or "", {})
            if "container" in where and not operator.runs_in_containers:
                raise UserErrorException(
                    f"Step '{step.name}': compute '{step.compute}' is a DockerCompute, which runs PythonScriptSteps "
                    f"only; a {step.kind} cannot run there."
                )
            task = operator.from_step_spec(step, spec, continue_on_step_failure=spec.continue_on_step_failure, **where)
            # One call per task: each ``>>`` makes Airflow rehash the DAG, which is quadratic in steps.
            task.set_upstream([tasks[u] for u in step.upstream])
            tasks[step.task_id] = task
    return dag


class PipelineToDag:
    """Turn a ``Pipeline`` (or a :class:`PipelineSpec`) into an Airflow DAG.

    :param pipeline: the pipeline or its spec
    """

    def __init__(self, pipeline: Pipeline | PipelineSpec) -> None:
        self.spec = pipeline if isinstance(pipeline, PipelineSpec) else pipeline.spec

    def to_dag(self, dag_id: str, schedule: Any = None, **dag_kwargs: Any) -> DAG:
        """An ordinary DAG: one task per step, ``PipelineParameter`` s as typed DAG params.

        :param dag_id: the DAG id
        :param schedule: the DAG's schedule (default: none, runs when triggered)
        :param dag_kwargs: other ``DAG`` arguments
        """
        return build_dag(self.spec, dag_id, schedule=schedule, **dag_kwargs)
