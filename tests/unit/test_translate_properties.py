"""Property-based tests (hypothesis) of the translator on random DAG shapes.

For any acyclic pipeline of PythonScriptSteps wired by data (``PipelineData``) and by ``run_after``,
with step names drawn from a small alphabet (so collisions and non-Latin names occur):

- the DAG's edges are exactly the dependency relation of the pipeline (data producers and run_after);
- task ids are unique, and the same when the pipeline is built again;
- the spec survives a JSON round trip unchanged, and a DAG built from the round-tripped spec has the
  same tasks and edges.
"""

from __future__ import annotations

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from aml_airflow_provider.pipeline.core import Pipeline, PipelineData
from aml_airflow_provider.spec import PipelineSpec
from aml_airflow_provider.translate import build_dag

NAMES = st.text(alphabet="ab -_.é字", min_size=1, max_size=4).filter(lambda s: s.strip())


@st.composite
def dag_shapes(draw) -> tuple[list[str], dict[int, set[int]], dict[int, set[int]]]:
    """Step names, data edges and run_after edges of a random acyclic graph (edges go from lower to higher index)."""
    size = draw(st.integers(min_value=1, max_value=12))
    names = [draw(NAMES) for _ in range(size)]
    data: dict[int, set[int]] = {i: set() for i in range(size)}
    after: dict[int, set[int]] = {i: set() for i in range(size)}
    for consumer in range(1, size):
        data[consumer] = draw(st.sets(st.integers(0, consumer - 1), max_size=3))
        after[consumer] = draw(st.sets(st.integers(0, consumer - 1), max_size=2))
    return names, data, after


def build(workspace, make_step, shape) -> tuple[Pipeline, list]:
    names, data, after = shape
    outputs = [PipelineData(f"out_{i}") for i in range(len(names))]
    consumed = {p for consumers in data.values() for p in consumers}
    steps = []
    for i, name in enumerate(names):
        step = make_step(
            # Step names must be unique in a pipeline; the index keeps them so, the drawn part varies ids.
            f"{name}{i}",
            inputs=[outputs[p] for p in sorted(data[i])],
            outputs=[outputs[i]] if i in consumed else [],
        )
        steps.append(step)
    for i, producers in after.items():
        for p in sorted(producers):
            steps[i].run_after(steps[p])
    return Pipeline(workspace, steps), steps


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(shape=dag_shapes())
def test_the_dag_has_exactly_the_pipelines_dependencies(workspace, make_step, shape):
    pipeline, steps = build(workspace, make_step, shape)
    spec = pipeline.spec
    ids = [spec.steps[[s.name for s in spec.steps].index(step.name)].task_id for step in steps]
    assert len(set(ids)) == len(ids)

    dag = build_dag(spec, "prop")

    _, data, after = shape
    expected = {ids[i]: {ids[p] for p in data[i] | after[i]} for i in range(len(ids))}
    assert {task_id: set(task.upstream_task_ids) for task_id, task in dag.task_dict.items()} == expected

    again, _ = build(workspace, make_step, shape)
    assert [s.task_id for s in again.spec.steps] == [s.task_id for s in spec.steps]  # stable across rebuilds


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(shape=dag_shapes())
def test_the_spec_round_trips_and_builds_the_same_dag(workspace, make_step, shape):
    spec = build(workspace, make_step, shape)[0].spec

    back = PipelineSpec.from_json(spec.to_json())

    assert back == spec and back.fingerprint == spec.fingerprint
    original, rebuilt = build_dag(spec, "a"), build_dag(back, "b")
    assert {t: set(task.upstream_task_ids) for t, task in original.task_dict.items()} == {
        t: set(task.upstream_task_ids) for t, task in rebuilt.task_dict.items()
    }
