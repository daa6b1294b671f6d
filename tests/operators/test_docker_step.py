"""A PythonScriptStep in a Docker container: the container spec the operator asks the Docker provider for,
and the control flow around it, against a loopback stand-in of the Docker Engine API (no Docker engine
runs on the build machines). The stand-in records what it was sent and plays the container's part."""

from __future__ import annotations

import json
import os
import threading
import time
from pathlib import Path

import pytest

from aml_airflow_provider.exceptions import StepRunError
from aml_airflow_provider.operators.python_script_step import PythonScriptStepOperator
from tests.support.docker_server import KILLED_EXIT_CODE, DockerEngineStandIn
from tests.support.task_instance import Background, FakeTI

IMAGE = "python:3.11-slim"


@pytest.fixture
def engine():
    with DockerEngineStandIn() as stand_in:
        yield stand_in


def make_operator(workspace, script_dir: Path, engine: DockerEngineStandIn, **kwargs) -> PythonScriptStepOperator:
    (script_dir / "train.py").write_text("print('never run here: the stand-in plays the container')\n")
    defaults = dict(
        task_id="train",
        workspace="test-ws",
        script_name="train.py",
        source_directory=str(script_dir),
        arguments=["--data", "$AZUREML_DATAREFERENCE_raw", "--out", "$AZUREML_DATAREFERENCE_model", "$(rm -rf /)"],
        inputs=[{"name": "raw", "uri": "azureml://datastores/workspaceblobstore/paths/docker-in/raw.csv"}],
        outputs=[{"name": "model", "datastore": "workspaceblobstore"}],
        container={"docker_url": engine.url, "api_version": "1.43", "mem_limit": "512m", "cpus": 1.5},
        environment={"dependencies": {"pip": ["inflection==0.5.1"], "conda": []}},
        environment_variables={"MY_VAR": "set"},
        allow_reuse=False,
    )
    return PythonScriptStepOperator(**{**defaults, **kwargs})


def datastore_root(workspace) -> Path:
    from aml_airflow_provider.core import Datastore

    root = Path(Datastore(workspace, "workspaceblobstore").root)
    (root / "docker-in").mkdir(parents=True, exist_ok=True)
    (root / "docker-in" / "raw.csv").write_text("a\n1\n")
    return root


def play_the_script(engine: DockerEngineStandIn, seen: dict[str, str]) -> threading.Thread:
    """Write the model into the output folder once the container exists, as the script in it would; note
    the entry point the container's command runs, as the mounted working directory holds it then."""

    def play() -> None:
        while not engine.containers:
            time.sleep(0.05)
        create = next(iter(engine.containers.values()))["create"]
        entry = Path(create["WorkingDir"], create["Cmd"][1])
        seen["entry"] = entry.read_text() if entry.is_file() else ""
        env = dict(e.split("=", 1) for e in create["Env"])
        os.makedirs(env["AZUREML_DATAREFERENCE_model"], exist_ok=True)
        Path(env["AZUREML_DATAREFERENCE_model"], "model.json").write_text(json.dumps({"trained": True}))

    thread = threading.Thread(target=play, daemon=True)
    thread.start()
    return thread


def test_the_container_spec_and_a_successful_run(workspace, connections, script_dir, engine):
    root = datastore_root(workspace)
    engine.script(image=IMAGE, stdout=["epoch 1", "done"], stderr=["a warning"], run_seconds=0.5)
    op = make_operator(
        workspace,
        script_dir,
        engine,
        environment={"docker_image": IMAGE, "dependencies": {"pip": ["inflection==0.5.1"]}},
    )
    seen: dict[str, str] = {}
    player = play_the_script(engine, seen)
    ti = FakeTI()

    op.execute({"ti": ti, "params": {}})

    player.join()
    assert "runpy.run_path(sys.argv[0]" in seen["entry"] and "AML_PIP_REQUIREMENTS" in seen["entry"]
    (container,) = engine.containers.values()
    create = container["create"]
    assert create["Image"] == IMAGE and create["User"] == f"{os.getuid()}:{os.getgid()}"
    env = dict(e.split("=", 1) for e in create["Env"])
    raw, model = env["AZUREML_DATAREFERENCE_raw"], env["AZUREML_DATAREFERENCE_model"]
    # Exec form, no shell: every argument one literal argument, paths as on the worker.
    assert create["Cmd"] == [
        "python",
        ".aml_container_entry.py",
        "train.py",
        "--data",
        raw,
        "--out",
        model,
        "$(rm -rf /)",
    ]
    assert raw == str(root / "docker-in" / "raw.csv")
    assert json.loads(env["AML_PIP_REQUIREMENTS"]) == ["inflection==0.5.1"] and env["MY_VAR"] == "set"
    assert env["AZUREML_RUN_ID"] == "manual__2026-01-01T00:00:00+00:00.t1"
    assert "PATH" not in env and not any(k.startswith("AIRFLOW") for k in env)  # the image's own environment
    mounts = {m["Target"]: m for m in create["HostConfig"]["Mounts"]}
    assert all(m["Source"] == target and m["Type"] == "bind" for target, m in mounts.items())
    assert mounts[str(root / "docker-in")]["ReadOnly"] is True  # an input: read-only
    assert mounts[str(Path(model).parent)].get("ReadOnly") in (None, False)  # an output: writable
    assert mounts[create["WorkingDir"]].get("ReadOnly") in (None, False)
    assert (create["HostConfig"]["Memory"], create["HostConfig"]["NanoCpus"]) == (512 * 1024**2, 1_500_000_000)
    assert container["started"] and container["removed"]  # removed once its exit code and logs were read
    # What the container wrote was published, as a step on the worker would have.
    location = ti.pushed["model"].split("/paths/", 1)[1]
    assert json.loads((root / location / "model.json").read_text()) == {"trained": True}


def test_a_failing_container_fails_the_step_with_its_output_and_is_removed(workspace, connections, script_dir, engine):
    datastore_root(workspace)
    engine.script(
        image="python:3.11",
        stdout=["loading"],
        stderr=["Traceback (most recent call last):", "ValueError: bad"],
        exit_code=3,
    )
    op = make_operator(
        workspace,
        script_dir,
        engine,
        container={"docker_url": engine.url, "api_version": "1.43", "image": "python:3.11"},
    )

    with pytest.raises(StepRunError, match=r"train.py exited with code 3") as info:
        op.execute({"ti": FakeTI(), "params": {}})

    assert "ValueError: bad" in str(info.value)
    (container,) = engine.containers.values()
    assert container["create"]["Image"] == "python:3.11" and container["removed"]


def test_a_missing_image_is_pulled_first(workspace, connections, script_dir, engine):
    datastore_root(workspace)
    engine.present_images = set()
    op = make_operator(
        workspace, script_dir, engine, container={"docker_url": engine.url, "api_version": "1.43", "image": "busybox"}
    )

    op.execute({"ti": FakeTI(), "params": {}})

    assert engine.pulled == ["busybox:latest"]
    assert [r.path for r in engine.requests_to("POST", r"/(images|containers)/.*")][:2] == [
        "/images/create",
        "/containers/create",
    ]


def test_an_image_that_cannot_be_pulled_is_a_clear_error(workspace, connections, script_dir, engine):
    datastore_root(workspace)
    engine.present_images = set()
    engine.missing_images = {"private/none:1"}
    op = make_operator(
        workspace,
        script_dir,
        engine,
        container={"docker_url": engine.url, "api_version": "1.43", "image": "private/none:1"},
    )

    with pytest.raises(StepRunError, match=rf"Docker engine at {engine.url}: .*private/none"):
        op.execute({"ti": FakeTI(), "params": {}})
    assert engine.containers == {}


def test_killing_the_task_stops_and_removes_the_container(workspace, connections, script_dir, engine):
    datastore_root(workspace)
    engine.script(image=IMAGE, stdout=["working"], run_seconds=120)
    op = make_operator(
        workspace, script_dir, engine, container={"docker_url": engine.url, "api_version": "1.43", "image": IMAGE}
    )
    running = Background(
        op,
        {"ti": FakeTI(), "params": {}},
        lambda: bool(engine.containers) and next(iter(engine.containers.values()))["started"],
    )

    op.on_kill()
    error = running.result()

    (container,) = engine.containers.values()
    assert container["stopped"] or container["killed"]
    assert container["removed"] and container["exit_code"] == KILLED_EXIT_CODE
    assert isinstance(error, StepRunError) and f"exited with code {KILLED_EXIT_CODE}" in str(error)
