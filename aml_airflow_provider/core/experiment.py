"""``Experiment``: a named group of runs; here, one Airflow DAG whose runs are the pipeline runs (SDK v1 path)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from aml_airflow_provider._names import check_experiment_name
from aml_airflow_provider.exceptions import UserErrorException

if TYPE_CHECKING:
    from aml_airflow_provider.core.workspace import Workspace
    from aml_airflow_provider.pipeline.core.run import PipelineRun


class Experiment:
    """Runs grouped under a name. Submitting a pipeline writes (or updates) the DAG ``<name>``.

    :param workspace: the workspace
    :param name: the experiment's name; also the Airflow ``dag_id`` of its runs
    """

    def __init__(self, workspace: Workspace, name: str, **kwargs: Any) -> None:
        self.workspace = workspace
        self.name = check_experiment_name(name)

    @property
    def dag_id(self) -> str:
        return self.name

    def submit(self, config: Any, tags: dict[str, str] | None = None, **kwargs: Any) -> PipelineRun:
        """Submit a pipeline for a run.

        Without an Airflow server configured the run executes in this process, through Airflow
        itself, and ``submit`` returns when it has finished (``wait_for_completion`` then returns at
        once).

        :param config: a ``Pipeline``
        :param tags: tags of the run
        :param kwargs: ``pipeline_parameters``, ``continue_on_step_failure``, ``regenerate_outputs``,
            ``parent_run_id`` (as v1)
        """
        from aml_airflow_provider.pipeline.core.pipeline import Pipeline
        from aml_airflow_provider.pipeline.core.submit import submit_pipeline

        if isinstance(config, Pipeline):
            return submit_pipeline(self, config, tags=tags, **kwargs)
        raise UserErrorException(f"Experiment.submit: cannot submit a {type(config).__name__}; give a Pipeline.")

    def get_runs(self) -> list[PipelineRun]:
        """This experiment's runs, newest first."""
        from aml_airflow_provider.pipeline.core.run import PipelineRun

        deployment = self.workspace._deployment
        return [PipelineRun(self, r.run_id) for r in deployment.list_dag_runs(self.dag_id)]

    def __repr__(self) -> str:
        return f"Experiment(workspace={self.workspace.name!r}, name={self.name!r})"
