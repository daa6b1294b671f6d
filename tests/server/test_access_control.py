"""Who may use the /aml endpoint and the Pipelines page, on a real Airflow server (simple auth manager).

Anonymous callers and callers with a bad token get nothing from any route, the page included. The
``viewer`` user (Airflow's read-only role) may look, but every route that writes or starts
something refuses it, and afterwards nothing was started, written or paused.
"""

from __future__ import annotations

import uuid

import pytest
import requests

from aml_airflow_provider.core import Workspace
from aml_airflow_provider.core.authentication import AirflowAuthentication
from aml_airflow_provider.exceptions import WorkspaceException
from aml_airflow_provider.pipeline.core import PublishedPipeline
from tests.server.conftest import all_runs, build
from tests.support.airflow_server import PASSWORDS

pytestmark = pytest.mark.server

SUBMIT_BODY = {"ExperimentName": "Access_Exp", "ParameterAssignments": {"pipeline_arg": 1}}


@pytest.fixture(scope="module")
def guarded(remote, airflow_server):
    """A published pipeline and an endpoint over it, made by admin; the URLs of every /aml route."""
    ws, auth, src = remote
    published = build(ws, src).publish(name="Access guarded")
    endpoint = f"guarded-{uuid.uuid4().hex[:6]}"
    document = {"id": str(uuid.uuid4()), "default_version": "0", "versions": {"0": published.id}, "status": "Active"}
    made = requests.put(
        f"{airflow_server.url}/aml/endpoints/{endpoint}", headers=auth.get_authentication_header(), json=document
    )
    assert made.status_code == 200, made.text
    return published, endpoint


def routes(base: str, published: PublishedPipeline, endpoint: str) -> list[tuple[str, str, dict | None]]:
    """(method, url, json body) of every /aml route, with ids that exist (the page's HTML included)."""
    aml = f"{base}/aml"
    document = {"document": {"dag_id": published.dag_id}, "title": "t"}
    return [
        ("GET", f"{aml}/ui/", None),
        ("GET", f"{aml}/pipelines", None),
        ("GET", f"{aml}/dags", None),
        ("GET", f"{aml}/dags/{published.dag_id}", None),
        ("GET", f"{aml}/endpoints", None),
        ("GET", f"{aml}/endpoints/{endpoint}", None),
        ("GET", f"{aml}/pipelines/{published.id}/runs/no-run", None),
        ("PUT", f"{aml}/dags/{published.dag_id}", document),
        ("PUT", f"{aml}/endpoints/{endpoint}", {"default_version": "0", "versions": {"0": published.id}}),
        ("POST", f"{aml}/pipelines/{published.id}/submit", SUBMIT_BODY),
        ("POST", f"{aml}/endpoints/{endpoint}/submit", SUBMIT_BODY),
    ]


@pytest.mark.parametrize("credentials", ["none", "bad token", "expired-looking token"])
def test_anonymous_callers_get_nothing_from_any_route(guarded, airflow_server, credentials):
    published, endpoint = guarded
    headers = {
        "none": {},
        "bad token": {"Authorization": "Bearer not-a-token"},
        # A well-formed JWT signed with another key: as a token from another deployment.
        "expired-looking token": {
            "Authorization": "Bearer eyJhbGciOiJIUzUxMiJ9.eyJzdWIiOiJhZG1pbiIsImV4cCI6MX0.c2lnbmF0dXJl"
        },
    }[credentials]
    before = all_runs(airflow_server)
    for method, url, body in routes(airflow_server.url, published, endpoint):
        response = requests.request(method, url, headers=headers, json=body, timeout=30)
        assert response.status_code in (401, 403), (method, url, response.status_code, response.text[:300])
        # Nothing of the pipeline leaks into the refusal (the page's HTML included).
        assert published.id not in response.text and "Access guarded" not in response.text, (method, url)
    assert all_runs(airflow_server) == before


def test_viewer_may_look_but_not_write_or_run(guarded, airflow_server):
    published, endpoint = guarded
    viewer = {"Authorization": f"Bearer {airflow_server.token('viewer')}"}
    admin = airflow_server.headers()
    aml = f"{airflow_server.url}/aml"
    document_before = requests.get(f"{aml}/dags/{published.dag_id}", headers=admin, timeout=30).json()
    endpoint_before = requests.get(f"{aml}/endpoints/{endpoint}", headers=admin, timeout=30).json()
    runs_before = all_runs(airflow_server)

    # Reading is what Airflow's viewer role is for: the page and the documents answer.
    page = requests.get(f"{aml}/ui/", headers=viewer, timeout=30)
    assert page.status_code == 200 and "Access guarded" in page.text
    assert requests.get(f"{aml}/dags/{published.dag_id}", headers=viewer, timeout=30).status_code == 200

    refused = {
        "submit the published pipeline": ("POST", f"{aml}/pipelines/{published.id}/submit", SUBMIT_BODY),
        "submit through the endpoint": ("POST", f"{aml}/endpoints/{endpoint}/submit", SUBMIT_BODY),
        "disable it (rewrite its document)": (
            "PUT",
            f"{aml}/dags/{published.dag_id}",
            {
                "document": {**document_before, "meta": {**document_before["meta"], "status": "Disabled"}},
                "title": "disabled by viewer",
            },
        ),
        "publish a new pipeline": (
            "PUT",
            f"{aml}/dags/aml_published_by_viewer",
            {"document": {**document_before, "dag_id": "aml_published_by_viewer"}, "title": "by viewer"},
        ),
        "re-point the endpoint": (
            "PUT",
            f"{aml}/endpoints/{endpoint}",
            {**endpoint_before, "description": "taken over"},
        ),
        # An endpoint naming no pipeline once skipped every permission check.
        "empty an endpoint": ("PUT", f"{aml}/endpoints/{endpoint}", {**endpoint_before, "versions": {}}),
        "create an endpoint naming no pipeline": (
            "PUT",
            f"{aml}/endpoints/viewer-made",
            {"id": "x", "default_version": "0", "versions": {}},
        ),
        "pause its DAG (Airflow's own API)": (
            "PATCH",
            f"{airflow_server.url}/api/v2/dags/{published.dag_id}",
            {"is_paused": True},
        ),
        "run its DAG (Airflow's own API)": (
            "POST",
            f"{airflow_server.url}/api/v2/dags/{published.dag_id}/dagRuns",
            {"logical_date": None, "conf": {"pipeline_arg": 2}},
        ),
    }
    for what, (method, url, body) in refused.items():
        response = requests.request(method, url, headers=viewer, json=body, timeout=30)
        assert response.status_code in (400, 403), (what, response.status_code, response.text[:300])
        if "empty" not in what and "naming no pipeline" not in what:
            assert response.status_code == 403, (what, response.text[:300])

    assert all_runs(airflow_server) == runs_before
    assert requests.get(f"{aml}/dags/{published.dag_id}", headers=admin, timeout=30).json() == document_before
    assert requests.get(f"{aml}/endpoints/{endpoint}", headers=admin, timeout=30).json() == endpoint_before
    assert requests.get(f"{aml}/dags/aml_published_by_viewer", headers=admin, timeout=30).status_code == 404
    assert requests.get(f"{aml}/endpoints/viewer-made", headers=admin, timeout=30).status_code == 404
    dag = requests.get(f"{airflow_server.url}/api/v2/dags/{published.dag_id}", headers=admin, timeout=30).json()
    assert dag["is_paused"] is False


def test_viewer_sdk_calls_are_refused(guarded, airflow_server, remote):
    """The SDK as the viewer: it cannot load the workspace (its connections are not the viewer's to read),
    and the calls ``submit``, ``disable`` and ``enable`` make through the server fail with 403."""
    import dataclasses

    from aml_airflow_provider.deployment.remote import RemoteDeployment

    published, _ = guarded
    ws, _, _ = remote
    viewer = AirflowAuthentication("viewer", PASSWORDS["viewer"])
    runs_before = all_runs(airflow_server)

    with pytest.raises(WorkspaceException, match="403"):
        Workspace.get(ws.name, viewer, airflow_url=airflow_server.url)
    deployment = RemoteDeployment(airflow_server.url, viewer)
    document = deployment.read_dag(published.dag_id)  # reading is allowed
    assert document.meta["id"] == published.id
    with pytest.raises(WorkspaceException, match="403"):
        deployment.trigger(published.dag_id, {"pipeline_arg": 3})  # PublishedPipeline.submit
    disabled = dataclasses.replace(document, meta={**document.meta, "status": "Disabled"})
    with pytest.raises(WorkspaceException, match="403"):
        deployment.write_dag(disabled, title="disabled by viewer")  # PublishedPipeline.disable, first half
    with pytest.raises(WorkspaceException, match="403"):
        deployment.set_paused(published.dag_id, True)  # and its second half

    assert all_runs(airflow_server) == runs_before
    assert PublishedPipeline.get(ws, published.id).status == "Active"
