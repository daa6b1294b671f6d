"""``Pipeline``: a validated graph of steps, compiled to a :class:`~aml_airflow_provider.spec.PipelineSpec`."""

from __future__ import annotations

import os
from collections import deque
from collections.abc import Iterable
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING, Any

from aml_airflow_provider._names import check_description, task_id_for
from aml_airflow_provider.core.compute import LOCAL_COMPUTE_NAME, ComputeTarget, compute_placement
from aml_airflow_provider.exceptions import (
    ComputeTargetException,
    PipelineValidationError,
    UserErrorException,
)
from aml_airflow_provider.pipeline.core.builder import PipelineData, PipelineStep, StepContext, StepSequence
from aml_airflow_provider.pipeline.core.graph import PipelineParameter
from aml_airflow_provider.spec import PLACEMENT_KEY, RESERVED_PARAMETERS, PipelineSpec

if TYPE_CHECKING:
    from airflow.sdk import DAG

    from aml_airflow_provider.core.datastore import Datastore
    from aml_airflow_provider.core.workspace import Workspace
    from aml_airflow_provider.pipeline.core.published import PublishedPipeline
    from aml_airflow_provider.pipeline.core.run import PipelineRun

_ACCEPTED_KWARGS = {"enable_email_notification", "default_datastore_name"}


def _flatten(
    item: Any, steps: list[PipelineStep], edges: list[tuple[PipelineStep, PipelineStep]]
) -> list[PipelineStep]:
    """Add the steps of ``item`` to ``steps``; return the steps it contributes (for StepSequence edges)."""
    if isinstance(item, PipelineStep):
        steps.append(item)
        return [item]
    if isinstance(item, PipelineData):
        if item.producer is None:
            raise UserErrorException(f"PipelineData '{item.name}' in steps has no producing step.")
        steps.append(item.producer)
        return [item.producer]
    if isinstance(item, StepSequence):
        previous: list[PipelineStep] = []
        contributed: list[PipelineStep] = []
        for element in item.elements:
            current = _flatten(element, steps, edges)
            edges.extend((before, after) for before in previous for after in current)
            previous = current
            contributed.extend(current)
        return contributed
    if isinstance(item, list | tuple):
        contributed = []
        for sub in item:
            contributed.extend(_flatten(sub, steps, edges))
        return contributed
    raise UserErrorException(
        f"Pipeline steps must be steps, lists of steps, StepSequences or PipelineData, not {type(item).__name__}."
    )


class _Context(StepContext):
    def __init__(self, pipeline: Pipeline) -> None:
        self.pipeline = pipeline

    def task_id(self, step: PipelineStep) -> str:
        return self.pipeline._task_ids[step]

    def output_datastore(self, data: PipelineData) -> str:
        return data.datastore.name if data.datastore is not None else self.pipeline._default_datastore_name

    def source_directory(self, step: PipelineStep) -> Path:
        own = getattr(step, "source_directory", None)
        return Path(own) if own is not None else self.pipeline._default_source_directory

    def run_after(self, step: PipelineStep) -> tuple[str, ...]:
        # Explicit run_after, and StepSequence order that no data dependency already implies.
        data_only = set(step._producers()) - set(step.run_after_steps)
        return tuple(self.task_id(s) for s in self.pipeline._upstream[step] if s not in data_only)


class Pipeline:
    """A set of steps and the data flowing between them.

    :param workspace: the workspace
    :param steps: steps, (nested) lists of steps, ``StepSequence`` s, or ``PipelineData`` (meaning its
        producer). Lists run in parallel unless data or ``run_after`` orders them
    :param description: the pipeline's description
    :param default_datastore: where outputs without a datastore go (default: the workspace default)
    :param default_source_directory: the source directory of steps that give none (default: the current folder)
    :param resolve_closure: pull in the producers of consumed data and ``run_after`` predecessors
    :param kwargs: ``enable_email_notification`` (accepted, no meaning here), ``default_datastore_name``
        (older alias of ``default_datastore``)

    Every problem is reported when the pipeline is built, in one :class:`PipelineValidationError`.
    """

    def __init__(
        self,
        workspace: Workspace,
        steps: Any,
        description: str | None = None,
        default_datastore: Datastore | None = None,
        default_source_directory: str | os.PathLike[str] | None = None,
        resolve_closure: bool = True,
        **kwargs: Any,
    ) -> None:
        from aml_airflow_provider.core.datastore import Datastore
        from aml_airflow_provider.core.workspace import Workspace

        unknown = set(kwargs) - _ACCEPTED_KWARGS
        if unknown:
            raise TypeError(f"Pipeline got unexpected keyword arguments: {sorted(unknown)}")
        if not isinstance(workspace, Workspace):
            raise UserErrorException(f"Pipeline: workspace must be a Workspace, not {type(workspace).__name__}.")
        self._workspace = workspace
        self.description = check_description(description, "Pipeline")
        if default_datastore is None and kwargs.get("default_datastore_name"):
            default_datastore = Datastore(workspace, kwargs["default_datastore_name"])
        if default_datastore is not None and not isinstance(default_datastore, Datastore):
            raise UserErrorException("Pipeline: default_datastore must be a Datastore.")
        self._default_datastore = default_datastore
        self._default_source_directory = Path(default_source_directory or os.getcwd()).resolve()
        self._resolve_closure = resolve_closure
        self._extra_edges: list[tuple[PipelineStep, PipelineStep]] = []
        listed: list[PipelineStep] = []
        _flatten(steps, listed, self._extra_edges)
        if not listed:
            raise UserErrorException("Pipeline: give at least one step.")
        self._listed = list(dict.fromkeys(listed))
        #: Registered computes by name, looked up once by validate() (or why the lookup failed).
        self._computes: dict[str, ComputeTarget | ComputeTargetException] = {}
        problems = self.validate()
        if problems:
            raise PipelineValidationError(problems)

    # -- graph ------------------------------------------------------------------------------------
    def _closure(self) -> tuple[list[PipelineStep], list[str]]:
        steps = list(self._listed)
        members = set(steps)
        problems: list[str] = []
        i = 0
        while i < len(steps):
            step = steps[i]
            i += 1
            needed = [(p, "produces data it consumes") for p in step._producers() if p is not None]
            needed += [(p, "is in its run_after list") for p in step.run_after_steps]
            for other, why in needed:
                if other in members:
                    continue
                if self._resolve_closure:
                    members.add(other)
                    steps.append(other)
                else:
                    problems.append(
                        f"Step '{other.name}' {why} of step '{step.name}' but is not in the pipeline; add it or "
                        "use resolve_closure=True."
                    )
        return steps, problems

    def _edges(self, steps: list[PipelineStep]) -> dict[PipelineStep, list[PipelineStep]]:
        members = set(steps)
        upstream: dict[PipelineStep, list[PipelineStep]] = {s: [] for s in steps}
        for step in steps:
            for other in [*step._producers(), *step.run_after_steps]:
                if other in members and other not in upstream[step]:
                    upstream[step].append(other)
        for before, after in self._extra_edges:
            if before not in upstream[after]:
                upstream[after].append(before)
        return upstream

    @staticmethod
    def _topological(steps: list[PipelineStep], upstream: dict[PipelineStep, list[PipelineStep]]):
        """Steps in a stable topological order (Kahn's algorithm), or ``(None, cycle)`` naming one cycle."""
        waiting = {s: len(upstream[s]) for s in steps}
        downstream: dict[PipelineStep, list[PipelineStep]] = {s: [] for s in steps}
        for step in steps:
            for up in upstream[step]:
                downstream[up].append(step)
        position = {s: i for i, s in enumerate(steps)}
        ready = deque(s for s in steps if waiting[s] == 0)
        order: list[PipelineStep] = []
        while ready:
            step = ready.popleft()
            order.append(step)
            released = []
            for down in downstream[step]:
                waiting[down] -= 1
                if waiting[down] == 0:
                    released.append(down)
            # Among steps that become ready together, keep the order in which they were given.
            ready.extend(sorted(released, key=position.__getitem__))
        if len(order) < len(steps):
            done = set(order)
            return None, _find_cycle([s for s in steps if s not in done], upstream)
        return order, None

    def validate(self) -> list[str]:
        """Every problem of the graph, as messages that name the steps, data and parameters involved."""
        steps, problems = self._closure()
        for step in steps:
            for port in step._inputs:
                if isinstance(port.source, PipelineData) and port.source.producer is None:
                    problems.append(
                        f"Step '{step.name}' consumes PipelineData '{port.source.name}' but no step produces it; "
                        "list it in the outputs of the step that writes it."
                    )
        names: dict[str, int] = {}
        for step in steps:
            names[step.name] = names.get(step.name, 0) + 1
        problems += [
            f"Step name '{n}' is used by {c} steps; give each step a unique name." for n, c in names.items() if c > 1
        ]
        problems += self._parameter_problems(steps)
        ctx = _Context(self)
        for step in steps:
            problems += step._check(ctx)
            for store in step._datastores():
                if store.workspace.name != self._workspace.name:
                    problems.append(
                        f"Step '{step.name}' uses datastore '{store.name}' of workspace '{store.workspace.name}', "
                        f"not of this pipeline's workspace '{self._workspace.name}'."
                    )
            problems += self._compute_problems(step)
        upstream = self._edges(steps)
        order, cycle = self._topological(steps, upstream)
        if cycle:
            problems.append("Cycle detected including steps " + " -> ".join(f"'{s.name}'" for s in cycle) + ".")
        if not problems:
            self._steps = order
            self._upstream = upstream
        return problems

    def _parameter_problems(self, steps: list[PipelineStep]) -> list[str]:
        problems: list[str] = []
        seen: dict[str, PipelineParameter] = {}
        env_names: dict[str, str] = {}
        for step in steps:
            for name, param in step.parameters.items():
                if name in RESERVED_PARAMETERS:
                    problems.append(
                        f"Pipeline parameter name '{name}' (step '{step.name}') is reserved; choose another name."
                    )
                known = seen.setdefault(name, param)
                if known._key() != param._key():
                    problems.append(
                        f"Pipeline parameters with same name '{name}' but different values: "
                        f"{known.default_value!r} and {param.default_value!r}."
                    )
                other = env_names.setdefault(param.env_name, name)
                if other != name:
                    problems.append(
                        f"Pipeline parameters '{other}' and '{name}' both become the environment variable "
                        f"{param.env_name}; rename one."
                    )
        self._parameters = seen
        return problems

    def _compute_problems(self, step: PipelineStep) -> list[str]:
        name = step._compute
        if name is None or name == LOCAL_COMPUTE_NAME:
            return []
        # One registry lookup per compute, however many steps use it; the spec's placement reuses it.
        if name not in self._computes:
            try:
                self._computes[name] = ComputeTarget(self._workspace, name)
            except ComputeTargetException as exc:
                self._computes[name] = exc
        found = self._computes[name]
        return [f"Step '{step.name}': {found}"] if isinstance(found, ComputeTargetException) else []

    # -- compiled form ----------------------------------------------------------------------------
    @cached_property
    def _task_ids(self) -> dict[PipelineStep, str]:
        ids: dict[PipelineStep, str] = {}
        used: set[str] = set()
        for step in self._steps:
            base = task_id_for(step.name)
            candidate, n = base, 2
            while candidate in used:
                candidate, n = f"{base}_{n}", n + 1
            used.add(candidate)
            ids[step] = candidate
        return ids

    @cached_property
    def _default_datastore_name(self) -> str:
        """Where outputs without a datastore go: the pipeline's default, else the workspace's (looked up once)."""
        return (self._default_datastore or self._workspace.get_default_datastore()).name

    @cached_property
    def spec(self) -> PipelineSpec:
        """The pipeline as a :class:`PipelineSpec` (computed once)."""
        ctx = _Context(self)
        steps = tuple(step._to_spec(ctx) for step in self._steps)
        placement = compute_placement(c for c in self._computes.values() if isinstance(c, ComputeTarget))
        return PipelineSpec(
            workspace=self._workspace.name,
            default_datastore=self._default_datastore_name,
            steps=steps,
            parameters=tuple(self._parameters[n]._spec() for n in sorted(self._parameters)),
            description=self.description,
            extra={PLACEMENT_KEY: placement} if placement else {},
        )

    # -- v1 API -----------------------------------------------------------------------------------
    @property
    def workspace(self) -> Workspace:
        return self._workspace

    @property
    def steps(self) -> list[PipelineStep]:
        """Every step, upstream first."""
        return list(self._steps)

    @property
    def parameters(self) -> dict[str, PipelineParameter]:
        return dict(self._parameters)

    def submit(
        self,
        experiment_name: str,
        pipeline_parameters: dict[str, Any] | None = None,
        continue_on_step_failure: bool = False,
        regenerate_outputs: bool = False,
        parent_run_id: str | None = None,
        **kwargs: Any,
    ) -> PipelineRun:
        """Same as ``Experiment(self.workspace, experiment_name).submit(self, ...)``."""
        from aml_airflow_provider.core.experiment import Experiment

        return Experiment(self._workspace, experiment_name).submit(
            self,
            pipeline_parameters=pipeline_parameters,
            continue_on_step_failure=continue_on_step_failure,
            regenerate_outputs=regenerate_outputs,
            parent_run_id=parent_run_id,
            **kwargs,
        )

    def publish(
        self,
        name: str | None = None,
        description: str | None = None,
        version: str | None = None,
        continue_on_step_failure: bool | None = None,
    ) -> PublishedPipeline:
        """Publish the pipeline: its own DAG, with the source snapshots taken now, runnable by id or REST.

        :param name: the published pipeline's name
        :param description: its description
        :param version: a free-form version label
        :param continue_on_step_failure: the default for its runs (a submission may override it)
        """
        from aml_airflow_provider.pipeline.core.published import publish_pipeline

        return publish_pipeline(self, name, description, version, continue_on_step_failure)

    def to_dag(self, dag_id: str, schedule: Any = None, **dag_kwargs: Any) -> DAG:
        """An Airflow DAG that runs this pipeline (see :class:`~aml_airflow_provider.translate.PipelineToDag`)."""
        from aml_airflow_provider.translate import PipelineToDag

        return PipelineToDag(self).to_dag(dag_id, schedule=schedule, **dag_kwargs)

    def __repr__(self) -> str:
        return f"Pipeline(workspace={self._workspace.name!r}, steps={[s.name for s in self._steps]!r})"


def _find_cycle(nodes: Iterable[PipelineStep], upstream: dict[PipelineStep, list[PipelineStep]]) -> list[PipelineStep]:
    """One cycle among ``nodes`` (each of which is on or behind a cycle), in dependency order."""
    nodes = list(nodes)
    members = set(nodes)
    path: list[PipelineStep] = []
    on_path: set[PipelineStep] = set()
    node = nodes[0]
    while node not in on_path:
        path.append(node)
        on_path.add(node)
        node = next(u for u in upstream[node] if u in members)
    cycle = path[path.index(node) :]
    cycle.reverse()  # upstream links point backwards; show the order data flows
    return [*cycle, cycle[0]]
