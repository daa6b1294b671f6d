"""DockerCompute and docker-enabled environments: what the model records and where steps are placed."""

from __future__ import annotations

import uuid

import pytest

from aml_airflow_provider.core import RunConfiguration
from aml_airflow_provider.core.compute import ComputeTarget, DockerCompute
from aml_airflow_provider.exceptions import ComputeTargetException, UserErrorException
from aml_airflow_provider.pipeline.core import Pipeline
from aml_airflow_provider.spec import PipelineSpec
from aml_airflow_provider.translate import PipelineToDag, build_dag


@pytest.fixture
def docker_compute(workspace) -> DockerCompute:
    config = DockerCompute.attach_configuration(
        docker_url="tcp://127.0.0.1:2375", image="python:3.11-slim", mem_limit="2g", cpus=1.5, network_mode="none"
    )
    return ComputeTarget.attach(workspace, f"dk-{uuid.uuid4().hex[:8]}", config)


def test_a_docker_compute_is_found_again_with_its_settings(workspace, docker_compute):
    again = ComputeTarget(workspace, docker_compute.name)
    assert type(again) is DockerCompute
    assert again.settings == {
        "docker_url": "tcp://127.0.0.1:2375",
        "image": "python:3.11-slim",
        "mem_limit": "2g",
        "cpus": 1.5,
        "network_mode": "none",
    }


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"docker_url": "/var/run/docker.sock"}, r"is not a Docker engine address: use unix:///path"),
        ({"mem_limit": "lots"}, r"mem_limit 'lots' is not a size"),
        ({"shm_size": "1 g"}, r"shm_size '1 g' is not a size"),
        ({"cpus": 0}, r"cpus must be a positive number, not 0"),
        ({"cpus": "2"}, r"cpus must be a positive number, not '2'"),
    ],
)
def test_settings_docker_would_refuse_are_refused_when_given(kwargs, message):
    with pytest.raises(ComputeTargetException, match=message):
        DockerCompute.attach_configuration(**kwargs)


def test_python_steps_on_it_carry_its_settings_to_the_operator(workspace, make_step, docker_compute):
    step = make_step("train", compute_target=docker_compute)
    dag = PipelineToDag(Pipeline(workspace, [step])).to_dag("in_docker")
    assert dag.get_task("train").container == docker_compute.settings


def test_an_environment_with_docker_enabled_records_its_image(workspace, make_step):
    run = RunConfiguration()
    run.environment.docker.enabled = True
    run.environment.docker.base_image = "python:3.11-slim"
    step = make_step("train", runconfig=run)
    task = PipelineToDag(Pipeline(workspace, [step])).to_dag("docker_env").get_task("train")
    assert task.environment["docker_image"] == "python:3.11-slim" and task.container is None
    assert task._image() == "python:3.11-slim"


def test_only_python_steps_may_run_on_a_docker_compute(workspace, make_step, docker_compute):
    spec = Pipeline(workspace, [make_step("train", compute_target=docker_compute)]).spec
    data = spec.to_dict()
    data["steps"][0]["kind"] = "DataTransferStep"  # as a copy step naming the compute would be
    with pytest.raises(UserErrorException, match=r"Step 'train': compute '.*' is a DockerCompute, which runs Python"):
        build_dag(PipelineSpec.from_dict(data), "wrong_kind")
