"""docker-compose.yml and its image, read rather than started (no Docker engine runs on the build machines).

Checked: the services of the complete deployment and their health checks and dependencies; one image and
one Airflow configuration for every Airflow service, pointing at the right services and ports; and versions
that match the native set-up (constraints-test.txt, package.json).
"""

from __future__ import annotations

import json
import re
import shlex
from pathlib import Path
from urllib.parse import urlparse

import yaml

REPO = Path(__file__).resolve().parents[1]
COMPOSE = yaml.safe_load((REPO / "docker-compose.yml").read_text())
SERVICES = COMPOSE["services"]
COMMON = COMPOSE["x-airflow-common"]
ENV = COMMON["environment"]
DOCKERFILE = (REPO / "docker" / "airflow.Dockerfile").read_text().replace("\\\n", " ")
COMPONENTS = {
    "airflow-apiserver": "airflow api-server",
    "airflow-scheduler": "airflow scheduler",
    "airflow-dag-processor": "airflow dag-processor",
    "airflow-triggerer": "airflow triggerer",
}
WORKERS = {"airflow-worker-1", "airflow-worker-2"}
AIRFLOW = {"airflow-init", *COMPONENTS, *WORKERS}
CONDITIONS = {"service_started", "service_healthy", "service_completed_successfully"}


def argv(service: str) -> list[str]:
    command = SERVICES[service].get("command", [])
    return command if isinstance(command, list) else shlex.split(command)


def container_ports(service: str) -> set[int]:
    """The container side of the service's published ports ("host:container")."""
    return {int(str(p).rsplit(":", 1)[-1]) for p in SERVICES[service].get("ports", [])}


def test_services_are_the_complete_deployment():
    assert set(SERVICES) == {"postgres", "redis", "azurite", *AIRFLOW}
    assert argv("airflow-init") == ["airflow", "db", "migrate"]
    assert {name: " ".join(argv(name)) for name in COMPONENTS} == COMPONENTS
    workers = {name for name in SERVICES if " ".join(argv(name)).startswith("airflow celery worker")}
    assert workers == WORKERS
    # Distinct Celery nodes (celery@<hostname>) whose hostname other containers resolve: the service name.
    assert {SERVICES[name]["hostname"] for name in workers} == workers
    for name in workers:
        args = argv(name)
        assert "default" in args[args.index("--queues") + 1].split(",")


def test_health_checks_and_dependencies():
    for name, service in SERVICES.items():
        if name != "airflow-init":
            assert service["healthcheck"]["test"], name
        for dependency, how in service.get("depends_on", {}).items():
            assert dependency in SERVICES and how["condition"] in CONDITIONS, (name, dependency)
            if how["condition"] == "service_healthy":
                assert "healthcheck" in SERVICES[dependency], (name, dependency)
    for name in AIRFLOW:
        depends_on = {dep: how["condition"] for dep, how in SERVICES[name]["depends_on"].items()}
        assert depends_on["postgres"] == depends_on["redis"] == "service_healthy", name
        if name != "airflow-init":
            assert depends_on["airflow-init"] == "service_completed_successfully", name
    assert SERVICES["airflow-init"].get("restart") == "no"
    for name in WORKERS:  # the workers run tasks through the API server's execution API
        assert SERVICES[name]["depends_on"]["airflow-apiserver"]["condition"] == "service_healthy"


def test_airflow_services_share_one_image_and_configuration():
    for name in AIRFLOW:
        service = SERVICES[name]
        assert (service["build"], service["image"], service["volumes"]) == (
            COMMON["build"],
            COMMON["image"],
            COMMON["volumes"],
        ), name
        airflow_settings = {k: v for k, v in service["environment"].items() if k.startswith("AIRFLOW__")}
        assert service["environment"].items() >= ENV.items() and airflow_settings.keys() <= ENV.keys(), name
    assert COMMON["build"] == {"context": ".", "dockerfile": "docker/airflow.Dockerfile"}
    assert ENV["AIRFLOW__CORE__EXECUTOR"] == "CeleryExecutor"
    assert ENV["AIRFLOW__API_AUTH__JWT_SECRET"] and ENV["AIRFLOW__API__SECRET_KEY"]

    broker = urlparse(ENV["AIRFLOW__CELERY__BROKER_URL"])
    assert (broker.scheme, broker.hostname, broker.port) == ("redis", "redis", 6379)
    postgres = SERVICES["postgres"]["environment"]
    for key, scheme in [
        ("AIRFLOW__DATABASE__SQL_ALCHEMY_CONN", "postgresql+psycopg2"),
        ("AIRFLOW__CELERY__RESULT_BACKEND", "db+postgresql+psycopg2"),
    ]:
        db = urlparse(ENV[key])
        assert (db.scheme, db.hostname, db.username, db.password, db.path) == (
            scheme,
            "postgres",
            postgres["POSTGRES_USER"],
            postgres["POSTGRES_PASSWORD"],
            "/" + postgres["POSTGRES_DB"],
        ), key

    execution_api = urlparse(ENV["AIRFLOW__CORE__EXECUTION_API_SERVER_URL"])
    assert execution_api.hostname == "airflow-apiserver"
    assert execution_api.port in container_ports("airflow-apiserver")
    assert execution_api.path == "/execution/"


def test_admin_login_is_in_the_passwords_file_the_image_writes():
    assert ENV["AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS"] == "admin:admin"
    written = re.search(r"echo '(.+)' > (\S+)", DOCKERFILE)
    assert written and written[2] == ENV["AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE"]
    assert json.loads(written[1]) == {"admin": "admin"}


def test_versions_match_the_native_set_up():
    (base,) = re.findall(r"^FROM apache/airflow:(\S+)-python3\.11$", DOCKERFILE, re.M)
    (pinned,) = re.findall(r"^apache-airflow==(\S+)$", (REPO / "constraints-test.txt").read_text(), re.M)
    assert base == pinned

    azurite = json.loads((REPO / "package.json").read_text())["devDependencies"]["azurite"].lstrip("^~")
    assert SERVICES["azurite"]["image"] == f"mcr.microsoft.com/azure-storage/azurite:{azurite}"
    settings = dict(part.split("=", 1) for part in ENV["AML_STORAGE_ACCOUNT"].strip(";").split(";"))
    endpoint = urlparse(settings["BlobEndpoint"])
    azurite_args = argv("azurite")
    assert endpoint.hostname == "azurite"
    assert endpoint.port == int(azurite_args[azurite_args.index("--blobPort") + 1])
    assert endpoint.port in container_ports("azurite")
    assert endpoint.path == "/" + settings["AccountName"]


def test_dags_are_mounted_and_the_image_installs_the_repository():
    assert f"./dags:{ENV['AIRFLOW__CORE__DAGS_FOLDER']}" in COMMON["volumes"]
    copies = [shlex.split(line)[1:] for line in DOCKERFILE.splitlines() if line.startswith("COPY ")]
    copied = {(src, dest.rstrip("/")) for *sources, dest in copies for src in sources if not src.startswith("--")}
    (install_dir,) = {dest for src, dest in copied if src == "pyproject.toml"}
    assert ("aml_airflow_provider", f"{install_dir}/aml_airflow_provider") in copied
    (pip,) = [shlex.split(line) for line in DOCKERFILE.splitlines() if line.startswith("RUN pip install")]
    assert install_dir in pip and "--no-cache-dir" in pip


def test_api_server_publishes_8080_and_checks_its_health():
    assert "8080:8080" in SERVICES["airflow-apiserver"]["ports"]
    assert "http://localhost:8080/api/v2/monitor/health" in SERVICES["airflow-apiserver"]["healthcheck"]["test"]


def test_the_distributed_test_in_make_test_runs_the_same_topology():
    """The native deployment of tests/server/test_celery_deployment.py: same executor, broker, result backend
    and queue, and as many workers."""
    from tests.support import airflow_server

    assert ENV["AIRFLOW__CORE__EXECUTOR"] == "CeleryExecutor"
    assert urlparse(airflow_server.REDIS_URL).scheme == urlparse(ENV["AIRFLOW__CELERY__BROKER_URL"]).scheme
    assert urlparse(ENV["AIRFLOW__CELERY__RESULT_BACKEND"]).scheme == airflow_server.RESULT_BACKEND_SCHEME
    assert len(WORKERS) == len(airflow_server.CELERY_WORKERS)
    for name in WORKERS:
        args = argv(name)
        assert airflow_server.WORKER_QUEUES[0] in args[args.index("--queues") + 1].split(",")
