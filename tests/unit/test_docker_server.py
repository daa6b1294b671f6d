"""Self-test of the Docker Engine API stand-in (tests/support/docker_server.py), driven by the real docker-py.

What these tests pin down is what later tests rely on: the stand-in answers ``docker.APIClient`` (and so
``DockerHook``) the way an engine does, records the container spec verbatim, and plays the scripted
outcome (output, exit code, run time, stop / kill) through start, logs, wait and remove.
"""

from __future__ import annotations

import threading
import time

import pytest
import requests

docker = pytest.importorskip("docker")

from tests.support.docker_server import (  # noqa: E402  (after the importorskip)
    KILLED_EXIT_CODE,
    MULTIPLEXED_STREAM,
    RAW_STREAM,
    DockerEngineStandIn,
    canonical_image,
)

IMAGE = "python:3.11-slim"


@pytest.fixture
def engine():
    """A started stand-in, stopped after the test."""
    with DockerEngineStandIn() as stand_in:
        yield stand_in


@pytest.fixture
def client(engine):
    """A docker-py low-level client pinned to API 1.43, as a DockerHook with ``version="1.43"`` builds it."""
    api = docker.APIClient(base_url=engine.url, version="1.43", timeout=10)
    yield api
    api.close()


def _create(client, image=IMAGE, **kwargs):
    host_config = client.create_host_config(
        mounts=[docker.types.Mount(target="/data", source="/tmp/x", type="bind")],
        mem_limit="512m",
        nano_cpus=1_000_000_000,
    )
    kwargs.setdefault("command", ["python", "-c", "print('hi')"])
    kwargs.setdefault("environment", {"STEP": "train"})
    return client.create_container(image, host_config=host_config, **kwargs)["Id"]


def test_ping_and_version_auto_negotiates_the_stand_in_version(engine):
    auto = docker.APIClient(base_url=engine.url, version="auto", timeout=10)
    assert auto.api_version == "1.43"
    assert auto.ping() is True
    info = auto.version()
    assert (info["ApiVersion"], info["MinAPIVersion"], info["Os"]) == ("1.43", "1.12", "linux")
    # version detection asks /version without a prefix; later calls carry /v1.43, recorded without it
    calls = [(r.method, r.path) for r in engine.requests]
    assert calls == [("GET", "/version"), ("GET", "/_ping"), ("GET", "/version")]
    assert not engine.unhandled


def test_full_run_records_the_spec_and_plays_the_script(engine, client):
    engine.script(image=IMAGE, stdout=["line 1", "line 2"], stderr=["warn"], exit_code=0)

    progress = list(client.pull(IMAGE, stream=True, decode=True))
    assert progress[0]["status"] == "Pulling from library/python"
    assert progress[-1]["status"] == f"Status: Image is up to date for {IMAGE}"
    assert client.inspect_image(IMAGE)["RepoTags"] == [IMAGE]

    container_id = _create(client, name="step-train", working_dir="/work", user="1000", labels={"run": "r1"})
    assert len(container_id) == 64 and int(container_id, 16) >= 0
    assert client.inspect_container(container_id)["State"]["Status"] == "created"
    client.start(container_id)

    frames = list(client.logs(container_id, stream=True, follow=True))
    assert frames == [b"line 1\n", b"line 2\n", b"warn\n"]
    assert client.logs(container_id, stdout=True, stderr=False) == b"line 1\nline 2\n"
    assert client.logs(container_id, tail=1) == b"warn\n"
    assert client.wait(container_id) == {"StatusCode": 0, "Error": None}
    state = client.inspect_container(container_id)["State"]
    assert (state["Status"], state["Running"], state["ExitCode"], state["OOMKilled"]) == ("exited", False, 0, False)
    client.remove_container(container_id)

    create = engine.containers[container_id]["create"]
    assert create["Image"] == IMAGE
    assert create["Cmd"] == ["python", "-c", "print('hi')"]
    assert create["Env"] == ["STEP=train"]
    assert (create["WorkingDir"], create["User"], create["Labels"]) == ("/work", "1000", {"run": "r1"})
    host = create["HostConfig"]
    assert host["Mounts"] == [{"Target": "/data", "Source": "/tmp/x", "Type": "bind", "ReadOnly": False}]
    assert (host["Memory"], host["NanoCpus"]) == (512 * 1024 * 1024, 1_000_000_000)
    record = engine.container("step-train")
    assert record["id"] == container_id
    assert (record["started"], record["removed"], record["stopped"], record["killed"]) == (True, True, False, False)
    assert record["remove_query"]["force"] == "False"

    calls = [(r.method, r.path.replace(container_id, "<id>")) for r in engine.requests]
    assert calls[:4] == [
        ("POST", "/images/create"),
        ("GET", "/images/python:3.11-slim/json"),
        ("POST", "/containers/create"),
        ("GET", "/containers/<id>/json"),
    ]
    assert ("POST", "/containers/<id>/start") in calls and ("POST", "/containers/<id>/wait") in calls
    assert calls[-1] == ("DELETE", "/containers/<id>")
    assert engine.requests_to("POST", "/containers/create")[0].query == {"name": "step-train"}
    assert not engine.unhandled and not engine.internal_errors


def test_failing_script_exits_with_its_code(engine, client):
    engine.script(image=IMAGE, stderr=["Traceback ...", "ValueError: boom"], exit_code=3, error="")
    container_id = _create(client)
    client.start(container_id)
    assert client.wait(container_id)["StatusCode"] == 3
    assert client.logs(container_id) == b"Traceback ...\nValueError: boom\n"
    assert client.inspect_container(container_id)["State"]["ExitCode"] == 3
    assert engine.containers[container_id]["exit_code"] == 3


def test_scripts_match_by_image_then_name_and_default_to_exit_zero(engine, client):
    engine.script(image="docker.io/library/python:3.11-slim", name="second", exit_code=5)
    engine.script(image=IMAGE, exit_code=4)
    first, second, other = _create(client, name="first"), _create(client, name="second"), _create(client, "busybox")
    for container_id in (first, second, other):
        client.start(container_id)
    assert [client.wait(c)["StatusCode"] for c in (first, second, other)] == [4, 5, 0]
    assert client.logs(other) == b""


def test_pull_of_a_missing_image_is_refused(engine, client):
    engine.missing_images = {"private/none:1"}
    with pytest.raises(docker.errors.NotFound) as raised:
        client.pull("private/none", tag="1")
    assert "pull access denied for private/none" in raised.value.explanation
    with pytest.raises(docker.errors.ImageNotFound):
        client.inspect_image("private/none:1")
    with pytest.raises(docker.errors.ImageNotFound):
        client.create_container("private/none:1", command=["true"])
    assert engine.pulled == [] and engine.containers == {}


def test_pull_makes_an_absent_image_present(engine, client):
    engine.present_images = set()
    with pytest.raises(docker.errors.ImageNotFound):
        client.inspect_image("busybox")
    output = client.pull("busybox")  # no tag: docker-py asks for :latest
    assert "Status: Downloaded newer image for busybox:latest" in output
    assert client.inspect_image("busybox:latest")["Id"].startswith("sha256:")
    assert engine.pulled == ["busybox:latest"]
    assert canonical_image("docker.io/library/busybox") in engine.present_images


def test_kill_during_a_long_run_makes_wait_return_137(engine, client):
    engine.script(image=IMAGE, stdout=["started"], run_seconds=30)
    container_id = _create(client)
    client.start(container_id)
    assert client.inspect_container(container_id)["State"]["Running"] is True
    results = []
    waiter = threading.Thread(target=lambda: results.append(docker.APIClient(engine.url, "1.43").wait(container_id)))
    waiter.start()
    time.sleep(0.2)
    assert waiter.is_alive(), "wait returned before the container exited"
    client.kill(container_id)
    waiter.join(timeout=60)  # a hang guard, not a speed limit: the run was scripted to last 30 s
    assert results == [{"StatusCode": KILLED_EXIT_CODE, "Error": None}]
    assert client.inspect_container(container_id)["State"]["ExitCode"] == KILLED_EXIT_CODE
    assert engine.containers[container_id]["killed"] is True
    with pytest.raises(docker.errors.APIError) as raised:  # the engine refuses to kill an exited container
        client.kill(container_id)
    assert raised.value.status_code == 409


def test_stop_ends_a_followed_log_and_wait(engine, client):
    engine.script(image=IMAGE, stdout=["a", "b", "c"], line_delay=10)
    container_id = _create(client)
    client.start(container_id)
    stream = client.logs(container_id, stream=True, follow=True)
    assert next(stream) == b"a\n"
    client.stop(container_id, timeout=1)
    assert list(stream) == []  # lines not yet due are never written
    assert client.wait(container_id)["StatusCode"] == KILLED_EXIT_CODE
    record = engine.containers[container_id]
    assert (record["stopped"], record["status"]) == (True, "exited")
    client.stop(container_id)  # 304: already stopped, not an error


def test_followed_log_streams_lines_as_they_come(engine, client):
    engine.script(image=IMAGE, output=[("stdout", "one"), ("stderr", "two"), ("stdout", "three")], line_delay=0.25)
    container_id = _create(client)
    began = time.monotonic()  # before start: line times count from the start
    client.start(container_id)
    arrivals = [(frame, time.monotonic() - began) for frame in client.logs(container_id, stream=True, follow=True)]
    assert [frame for frame, _ in arrivals] == [b"one\n", b"two\n", b"three\n"]
    # streamed as they become due, not all at once: the last is not due before 2 x 0.25 s
    assert arrivals[-1][1] >= 0.5
    stamped = client.logs(container_id, timestamps=True).splitlines()
    assert stamped[0].endswith(b"Z one") and len(stamped) == 3


def test_log_streams_are_framed_per_tty(engine, client):
    engine.script(image=IMAGE, stdout=["out"], stderr=["err"])
    plain, tty = _create(client), _create(client, tty=True)
    for container_id in (plain, tty):
        client.start(container_id)
        client.wait(container_id)
    base = f"http://127.0.0.1:{engine.port}"
    plain_answer = requests.get(f"{base}/v1.43/containers/{plain}/logs?stdout=1&stderr=1", timeout=10)
    assert plain_answer.headers["Content-Type"] == MULTIPLEXED_STREAM
    assert plain_answer.content == b"\x01\x00\x00\x00\x00\x00\x00\x04out\n\x02\x00\x00\x00\x00\x00\x00\x04err\n"
    tty_answer = requests.get(f"{base}/v1.43/containers/{tty}/logs?stdout=1&stderr=1", timeout=10)
    assert tty_answer.headers["Content-Type"] == RAW_STREAM
    # before API 1.42 the engine labelled both kinds raw-stream
    old_answer = requests.get(f"{base}/v1.41/containers/{plain}/logs?stdout=1", timeout=10)
    assert old_answer.headers["Content-Type"] == RAW_STREAM
    assert client.logs(tty) == b"out\r\nerr\r\n"


def test_remove_refuses_a_running_container_unless_forced(engine, client):
    engine.script(image=IMAGE, run_seconds=30)
    container_id = _create(client)
    client.start(container_id)
    with pytest.raises(docker.errors.APIError) as raised:
        client.remove_container(container_id)
    assert raised.value.status_code == 409
    client.remove_container(container_id, force=True)
    assert engine.containers[container_id]["exit_code"] == KILLED_EXIT_CODE
    with pytest.raises(docker.errors.NotFound):
        client.remove_container(container_id)
    with pytest.raises(docker.errors.NotFound):
        client.wait("0" * 64)


def test_auto_remove_and_name_conflicts(engine, client):
    first = client.create_container(IMAGE, name="job", host_config=client.create_host_config(auto_remove=True))
    with pytest.raises(docker.errors.APIError) as raised:
        client.create_container(IMAGE, name="job")
    assert raised.value.status_code == 409
    client.start(first["Id"])
    with pytest.raises(docker.errors.NotFound):  # gone once it exited, as with --rm
        client.inspect_container(first["Id"])
    assert engine.containers[first["Id"]]["auto_removed"] is True
    client.create_container(IMAGE, name="job")  # the name is free again


def test_unknown_endpoints_and_versions_are_refused_and_recorded(engine, client):
    with pytest.raises(docker.errors.APIError) as raised:
        client.images()
    assert raised.value.status_code == 404
    assert raised.value.explanation == "not implemented in the stand-in: GET /images/json"
    assert [(r.method, r.path) for r in engine.unhandled] == [("GET", "/images/json")]
    too_new = docker.APIClient(base_url=engine.url, version="1.44")
    with pytest.raises(docker.errors.APIError) as raised:
        too_new.ping()
    assert "Maximum supported API version is 1.43" in raised.value.explanation


def test_stop_ends_a_blocked_wait(engine):
    engine.script(image=IMAGE, run_seconds=60)
    api = docker.APIClient(base_url=engine.url, version="1.43")
    container_id = api.create_container(IMAGE)["Id"]
    api.start(container_id)
    errors = []

    def wait():
        try:
            api.wait(container_id)
        except (docker.errors.APIError, requests.exceptions.ConnectionError) as err:
            errors.append(err)

    waiter = threading.Thread(target=wait)
    waiter.start()
    time.sleep(0.2)
    engine.stop()
    waiter.join(timeout=60)  # a hang guard: the run was scripted to last 60 s
    assert not waiter.is_alive()
    assert errors, "wait did not fail once the stand-in stopped"


def test_docker_hook_connects(engine):
    from airflow.providers.docker.hooks.docker import DockerHook

    hook = DockerHook(docker_conn_id=None, base_url=engine.url, version="1.43")
    api = hook.api_client
    assert hook.client_created and api.api_version == "1.43"
    assert [(r.method, r.path) for r in engine.requests] == [("GET", "/_ping")]
    engine.script(image=IMAGE, stdout=["from the hook"], exit_code=0)
    container_id = api.create_container(IMAGE, command=["echo", "from the hook"])["Id"]
    api.start(container_id)
    assert api.wait(container_id)["StatusCode"] == 0
    assert api.logs(container_id) == b"from the hook\n"

    auto = DockerHook(docker_conn_id=None, base_url=engine.url, version=None).api_client
    assert auto.api_version == "1.43"
    assert not engine.unhandled
