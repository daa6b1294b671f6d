"""The /aml endpoint fuzzed from its own OpenAPI description with schemathesis, on a real Airflow server.

Every operation of ``/aml/openapi.json`` gets requests that fit its schema and requests that do not,
sent with admin's token (so Airflow's auth lets them through to our code). Two properties hold for
every one of them: the server never answers 5xx, and a request it refuses (4xx) starts no DAG run;
the only runs that appear are those a 2xx submit answered with.
"""

from __future__ import annotations

import json
import uuid

import pytest
import requests
import schemathesis
from hypothesis import HealthCheck, Phase, example, given, settings
from hypothesis import strategies as st
from hypothesis.errors import Unsatisfiable
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error

from aml_airflow_provider.core import Datastore
from aml_airflow_provider.data import DataPath, DataPathComputeBinding
from aml_airflow_provider.pipeline.core import Pipeline, PipelineParameter
from aml_airflow_provider.pipeline.steps import PythonScriptStep
from tests.server.conftest import all_runs

pytestmark = pytest.mark.server

#: Generated requests per operation and generation mode (about 10 operations, 2 modes).
MAX_EXAMPLES = 40
SUBMIT_PATHS = ("/pipelines/{pipeline_id}/submit", "/endpoints/{name}/submit")


@pytest.fixture(scope="module")
def target(remote, airflow_server):
    """A published pipeline with a parameter of every type, an endpoint over it, and its DAG paused
    (runs a fuzzed submission starts stay queued instead of loading the machine)."""
    ws, auth, src = remote
    (src / "typed.py").write_text("print('typed')\n")
    store = Datastore(ws, "workspaceblobstore")
    params = [
        PipelineParameter("count", 3),
        PipelineParameter("rate", 0.5),
        PipelineParameter("flag", False),
        PipelineParameter("label", "x"),
    ]
    binding = (PipelineParameter("input_path", DataPath(store, "fuzz/in")), DataPathComputeBinding())
    step = PythonScriptStep(
        "typed.py", name="typed", arguments=[*params, binding], inputs=[binding], source_directory=src
    )
    published = Pipeline(ws, [step]).publish(name="Fuzz target")
    headers = auth.get_authentication_header()
    paused = requests.patch(
        f"{airflow_server.url}/api/v2/dags/{published.dag_id}", headers=headers, json={"is_paused": True}, timeout=30
    )
    assert paused.status_code == 200, paused.text
    endpoint = f"fuzz-{uuid.uuid4().hex[:6]}"
    document = {"id": str(uuid.uuid4()), "default_version": "0", "versions": {"0": published.id}}
    made = requests.put(f"{airflow_server.url}/aml/endpoints/{endpoint}", headers=headers, json=document, timeout=30)
    assert made.status_code == 200, made.text
    return published, endpoint


def test_fuzzed_requests_never_fail_the_server_nor_start_runs_when_refused(target, airflow_server):
    published, endpoint = target
    headers = airflow_server.headers()
    schema = schemathesis.openapi.from_url(f"{airflow_server.url}/aml/openapi.json", timeout=30)
    # Airflow checks the token before our code runs: fuzz what is behind it, with a valid one.
    schema.config.generation.update(with_security_parameters=False)
    base_url = f"{airflow_server.url}/aml"
    real_ids = {"pipeline_id": published.id, "name": endpoint}
    started: set[str] = set()  # run ids that 2xx submissions answered with
    seen: dict[str, set[int]] = {}
    runs_before = all_runs(airflow_server)

    operations = [result.ok() for result in schema.get_all_operations()]
    assert {op.path for op in operations} >= {*SUBMIT_PATHS, "/dags/{dag_id}", "/endpoints/{name}", "/pipelines"}

    def send(operation, case, use_real: bool) -> None:
        label = f"{operation.method.upper()} {operation.path}"
        if use_real and operation.method.upper() != "PUT" and isinstance(case.path_parameters, dict):
            # Half the requests reach an existing pipeline/endpoint, so the body is what is judged.
            for key in case.path_parameters.keys() & real_ids.keys():
                case.path_parameters[key] = real_ids[key]
        is_submit = operation.path in SUBMIT_PATHS
        before = all_runs(airflow_server) if is_submit else None
        response = case.call(base_url=base_url, headers=headers, timeout=60)
        seen.setdefault(label, set()).add(response.status_code)
        case.validate_response(response, checks=[not_a_server_error])
        if before is None:
            return
        new = all_runs(airflow_server) - before
        if 200 <= response.status_code < 300:
            run_id = response.json()["Id"]
            assert new == {(published.dag_id, run_id)}, (label, case.body, new)
            started.add(run_id)
        else:
            assert new == set(), f"{label} refused with {response.status_code} but started {new}: {case.body!r}"

    def fuzzer(operation, mode):
        test = given(case=operation.as_strategy(generation_mode=mode), use_real=st.booleans())(
            lambda case, use_real: send(operation, case, use_real)
        )
        if mode == GenerationMode.POSITIVE and operation.path in SUBMIT_PATHS:
            # One valid submission each, whatever the generator draws: a 2xx must start exactly its run.
            key = "pipeline_id" if "{pipeline_id}" in operation.path else "name"
            valid = {"ExperimentName": "Fuzz_Exp", "ParameterAssignments": {"count": "7", "flag": True}}
            test = example(case=operation.Case(path_parameters={key: real_ids[key]}, body=valid), use_real=False)(test)
        return settings(
            max_examples=MAX_EXAMPLES,
            derandomize=True,
            database=None,
            deadline=None,
            phases=[Phase.explicit, Phase.generate],
            suppress_health_check=list(HealthCheck),
        )(test)

    negative: set[str] = set()
    for operation in operations:
        fuzzer(operation, GenerationMode.POSITIVE)()
        try:
            fuzzer(operation, GenerationMode.NEGATIVE)()
        except Unsatisfiable:
            # Nothing to get wrong: no body, and only text in the path (GET /pipelines, GET /dags/{dag_id}).
            assert len(operation.body) == 0, operation.label
        else:
            negative.add(f"{operation.method.upper()} {operation.path}")
    # Invalid bodies went to every route that takes one.
    assert negative >= {"PUT /dags/{dag_id}", "PUT /endpoints/{name}", *(f"POST {p}" for p in SUBMIT_PATHS)}

    # Across every operation: the runs that exist now are those before plus those 2xx answers named.
    assert all_runs(airflow_server) - runs_before == {(published.dag_id, r) for r in started}
    # The fuzz reached our code: each submit route refused requests (4xx) and accepted some (2xx).
    for path in SUBMIT_PATHS:
        codes = seen[f"POST {path}"]
        assert any(400 <= c < 500 for c in codes) and any(200 <= c < 300 for c in codes), seen
    assert len(started) >= 2
    # Nothing the fuzz sent broke the page or the listing for everyone else.
    assert requests.get(f"{base_url}/ui/", headers=headers, timeout=30).status_code == 200
    listed = requests.get(f"{base_url}/pipelines", headers=headers, timeout=30)
    assert listed.status_code == 200 and published.id in [p["id"] for p in listed.json()["pipelines"]]


#: Requests that once made the endpoint answer 500 (or store a document that broke it for everyone):
#: (method, path under /aml with {pipeline_id}/{endpoint}/{dag_id} filled in, JSON body, text the answer names).
KNOWN_BAD = {
    "dag id that breaks the naming rule": ("GET", "/dags/%C8%BE", None, "Invalid dag_id"),
    "endpoint name that breaks the naming rule": ("GET", "/endpoints/a%20b", None, "No pipeline endpoint"),
    "submit to an endpoint name that breaks the rule": (
        "POST",
        "/endpoints/a%20b/submit",
        {"ExperimentName": "E"},
        "No pipeline endpoint",
    ),
    "NUL byte in the run's description": (
        "POST",
        "/pipelines/{pipeline_id}/submit",
        {"ExperimentName": "E", "Description": "a\u0000b"},
        "Description",
    ),
    "NUL byte in a run tag": (
        "POST",
        "/pipelines/{pipeline_id}/submit",
        {"ExperimentName": "E", "tags": {"team": "a\u0000b"}},
        "team",
    ),
    "integer too large for JSON clients": (
        "POST",
        "/endpoints/{endpoint}/submit",
        {"ExperimentName": "E", "ParameterAssignments": {"count": 10**30}},
        "count",
    ),
    "integer too large for a float parameter": (
        "POST",
        "/endpoints/{endpoint}/submit",
        {"ExperimentName": "E", "ParameterAssignments": {"rate": 10**400}},
        "rate",
    ),
    "5000 digits as text": (
        "POST",
        "/endpoints/{endpoint}/submit",
        {"ExperimentName": "E", "ParameterAssignments": {"count": "9" * 5000}},
        "count",
    ),
    "datastore name that breaks the naming rule": (
        "POST",
        "/endpoints/{endpoint}/submit",
        {"ExperimentName": "E", "DataPathAssignments": {"input_path": {"DataStoreName": "no such store!"}}},
        "input_path",
    ),
    "endpoint versions that are not an object": (
        "PUT",
        "/endpoints/fuzz-list-versions",
        {"id": "x", "default_version": "0", "versions": ["0"]},
        "versions",
    ),
    "endpoint without a default version": (
        "PUT",
        "/endpoints/fuzz-no-default",
        {"id": "x", "versions": {"0": "{pipeline_id}"}},
        "default_version",
    ),
    "DAG document whose pipeline is not an object": (
        "PUT",
        "/dags/fuzz_doc",
        {"document": {"dag_id": "fuzz_doc", "pipeline": [1]}, "title": "t"},
        "document.pipeline",
    ),
    "published document without id (broke the Pipelines page)": (
        "PUT",
        "/dags/fuzz_doc",
        {"document": {"dag_id": "fuzz_doc", "kind": "published", "pipeline": {}}, "title": "t"},
        "document",
    ),
    "NUL byte in the DAG file's title": (
        "PUT",
        "/dags/fuzz_doc",
        {"document": {"dag_id": "fuzz_doc"}, "title": "a\u0000b"},
        "title",
    ),
    "unknown DAG argument": (
        "PUT",
        "/dags/fuzz_doc",
        {"document": {"dag_id": "fuzz_doc", "dag_kwargs": {"schedule": "@once"}}, "title": "t"},
        "schedule",
    ),
}


@pytest.mark.parametrize("case", KNOWN_BAD.values(), ids=KNOWN_BAD.keys())
def test_requests_that_once_failed_the_endpoint_are_refused_with_a_reason(target, airflow_server, case):
    published, endpoint = target
    method, path, body, named = case
    headers = airflow_server.headers()
    fill = {"{pipeline_id}": published.id, "{endpoint}": endpoint}
    for key, value in fill.items():
        path = path.replace(key, value)
        if body is not None:
            body = json.loads(json.dumps(body).replace(key, value))
    before = all_runs(airflow_server)

    response = requests.request(method, f"{airflow_server.url}/aml{path}", headers=headers, json=body, timeout=60)

    assert response.status_code in (400, 404), (response.status_code, response.text[:300])
    assert named in response.json()["detail"]
    assert all_runs(airflow_server) == before
    # Nothing was stored, and the page still answers.
    assert requests.get(f"{airflow_server.url}/aml/dags/fuzz_doc", headers=headers, timeout=30).status_code == 404
    assert requests.get(f"{airflow_server.url}/aml/ui/", headers=headers, timeout=30).status_code == 200
