"""The ``/aml`` FastAPI app, mounted by the plugin on Airflow's API server.

- v1's REST contract for published pipelines and pipeline endpoints: ``POST .../submit`` with
  ``ExperimentName``, ``ParameterAssignments`` (values may be strings), ``DataPathAssignments``, ...,
  answered with ``{"Id": <run id>}``; and a status route per run.
- The document routes a client of a remote workspace uses to write and read the DAG documents
  (pipeline specs) in this deployment's dags folder.
- The *Pipelines* page.

Authentication and authorisation are Airflow's own: the ``/api/v2`` bearer token (or the UI's
session cookie), checked by Airflow's auth manager. A user needs the right to trigger a DAG to
submit its pipeline, to edit it to publish, and to read it to see it.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Any

from airflow.api_fastapi.auth.managers.models.resource_details import DagAccessEntity, DagDetails
from airflow.api_fastapi.core_api.security import GetUserDep
from fastapi import Body, FastAPI, HTTPException, Query, Request, status
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, JSONResponse
from pydantic import BaseModel, ConfigDict, Field

from aml_airflow_provider import __version__
from aml_airflow_provider._names import check_description, has_control_characters
from aml_airflow_provider.dagfile import Catalog, DagDocument, check_dag_id, check_endpoint_name
from aml_airflow_provider.exceptions import InvalidNameError, UserErrorException
from aml_airflow_provider.plugins import pages

app = FastAPI(
    title="Azure ML pipelines on Airflow",
    version=__version__,
    description="Submit published pipelines with SDK v1's REST body; read and write pipeline documents.",
)


@app.exception_handler(RequestValidationError)
async def _bad_body(request: Request, exc: RequestValidationError) -> JSONResponse:
    # v1 clients expect 400 for a request they got wrong, with what was wrong.
    problems = "; ".join(f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in exc.errors())
    return JSONResponse(status_code=400, content={"detail": problems})


@app.exception_handler(UserErrorException)
async def _user_error(request: Request, exc: UserErrorException) -> JSONResponse:
    return JSONResponse(status_code=400, content={"detail": str(exc)})


def catalog() -> Catalog:
    from airflow.configuration import conf

    return Catalog(Path(conf.get("core", "dags_folder")))


def authorize_dag(user: Any, dag_id: str | None, method: str, entity: DagAccessEntity | None = None) -> None:
    from airflow.api_fastapi.app import get_auth_manager

    if not get_auth_manager().is_authorized_dag(
        method=method,
        access_entity=entity,
        details=DagDetails(id=dag_id),
        user=user,  # type: ignore[arg-type]
    ):
        raise HTTPException(status.HTTP_403_FORBIDDEN, "Forbidden")


def readable(user: Any, documents: list[DagDocument]) -> list[DagDocument]:
    from airflow.api_fastapi.app import get_auth_manager

    manager = get_auth_manager()
    return [d for d in documents if manager.is_authorized_dag(method="GET", details=DagDetails(id=d.dag_id), user=user)]


# -- documents --------------------------------------------------------------------------------------
class DagBody(BaseModel):
    document: dict[str, Any]
    title: str


#: What a document may hold, so that a stored document never breaks the DAG processor or the page.
_KINDS = ("experiment", "published", "schedule")
_DAG_KWARGS = ("tags", "description")
_REQUIRED_META = {"published": ("id", "name"), "schedule": ("id", "name", "pipeline_dag_id")}
_STATUSES = ("Active", "Disabled")


def _bad(message: str) -> HTTPException:
    return HTTPException(status.HTTP_400_BAD_REQUEST, message)


def _checked(check: Any, *args: Any) -> Any:
    """``check(*args)``, its ``ValueError`` (an invalid name or text) answered with a 400 that says why."""
    try:
        return check(*args)
    except ValueError as exc:
        raise _bad(str(exc)) from None


def _checked_dag_id(dag_id: str) -> str:
    return _checked(check_dag_id, dag_id)


def check_document(dag_id: str, body: DagBody) -> DagDocument:
    """The document a client sent, checked field by field; an ``HTTPException(400)`` names what is wrong.

    Only documents the package itself could have written are stored: anything else would break the
    DAG processor, the Pipelines page or the submit routes for every user.
    """
    _checked_dag_id(dag_id)
    if not body.title.strip() or len(body.title) > 1000 or has_control_characters(body.title):
        raise _bad("title: give 1-1000 characters without control characters (it heads the DAG file).")
    # The server computes the spec's fingerprint itself: a client must not choose it.
    data = {k: v for k, v in body.document.items() if k != "fingerprint"}
    kind = data.get("kind", "experiment")
    if kind not in _KINDS:
        raise _bad(f"document.kind {kind!r} must be one of {', '.join(_KINDS)}.")
    for key in ("dag_kwargs", "meta"):
        if not isinstance(data.get(key, {}), Mapping):
            raise _bad(f"document.{key} must be an object.")
    dag_kwargs = data.get("dag_kwargs", {})
    unknown = sorted(set(dag_kwargs) - set(_DAG_KWARGS))
    if unknown:
        raise _bad(f"document.dag_kwargs: {unknown[0]!r} is not accepted (only {', '.join(_DAG_KWARGS)}).")
    tags = dag_kwargs.get("tags", [])
    if not isinstance(tags, list) or not all(isinstance(t, str) and t and "\x00" not in t for t in tags):
        raise _bad("document.dag_kwargs.tags must be a list of non-empty strings.")
    _checked(check_description, dag_kwargs.get("description"), "document.dag_kwargs")
    pipeline = data.get("pipeline")
    if kind == "schedule" and pipeline is not None:
        raise _bad("document.pipeline: a schedule document has no pipeline spec (it runs a published pipeline).")
    if kind != "schedule" and (not isinstance(pipeline, Mapping) or not pipeline):
        raise _bad(f"document.pipeline: a {kind} document needs its pipeline spec (an object).")
    try:
        document = DagDocument.from_dict(data)
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        raise _bad(f"Invalid DAG document: {type(exc).__name__}: {exc}") from None
    if document.dag_id != dag_id:
        raise _bad(f"The document is for DAG {document.dag_id!r}, not {dag_id!r}.")
    for key in _REQUIRED_META.get(kind, ()):
        value = document.meta.get(key)
        if not isinstance(value, str) or not value.strip() or "\x00" in value:
            raise _bad(f"document.meta.{key}: a {kind} document needs it as non-empty text.")
    if kind == "schedule" and not isinstance(document.meta.get("conf"), Mapping):
        raise _bad("document.meta.conf: a schedule document needs the conf of the runs it starts (an object).")
    if document.meta.get("status", "Active") not in _STATUSES:
        raise _bad(f"document.meta.status must be one of {', '.join(_STATUSES)}.")
    return document


@app.put("/dags/{dag_id}", summary="Write a pipeline's DAG document")
def put_dag(dag_id: str, body: DagBody, user: GetUserDep) -> dict[str, str]:
    authorize_dag(user, dag_id, "PUT")
    document = check_document(dag_id, body)
    if document.kind == "schedule":
        # A schedule triggers another DAG: who writes one must be allowed to run that DAG.
        authorize_dag(user, document.meta.get("pipeline_dag_id"), "POST", DagAccessEntity.RUN)
    catalog().write_dag(document, title=body.title)
    return {"dag_id": dag_id, "fingerprint": document.spec.fingerprint if document.spec else ""}


@app.get("/dags/{dag_id}", summary="Read a pipeline's DAG document")
def get_dag(dag_id: str, user: GetUserDep) -> dict[str, Any]:
    authorize_dag(user, dag_id, "GET")
    document = catalog().read_dag(_checked_dag_id(dag_id))
    if document is None:
        raise HTTPException(404, f"No pipeline DAG {dag_id!r}.")
    return document.to_dict()


@app.get("/dags", summary="List pipeline DAG documents")
def list_dags(user: GetUserDep, kind: str | None = None) -> list[dict[str, Any]]:
    return [d.to_dict() for d in readable(user, catalog().list_dags(kind))]


_VERSION_RE = re.compile(r"[0-9]{1,9}")


def _read_endpoint(name: str) -> dict[str, Any]:
    """The endpoint's document, or 404 (a name that breaks the naming rule cannot exist)."""
    try:
        document = catalog().read_endpoint(name)
    except InvalidNameError:
        document = None
    if document is None:
        raise HTTPException(404, f"No pipeline endpoint {name!r}.")
    return document


@app.put("/endpoints/{name}", summary="Write a pipeline endpoint")
def put_endpoint(name: str, user: GetUserDep, document: Annotated[dict[str, Any], Body()]) -> dict[str, str]:
    _checked(check_endpoint_name, name)
    versions = document.get("versions")
    if (
        not isinstance(versions, Mapping)
        or not versions
        or not all(isinstance(v, str) and _VERSION_RE.fullmatch(v) for v in versions)
        or not all(isinstance(p, str) for p in versions.values())
    ):
        raise _bad('versions must map version numbers ("0", "1", ...) to published pipeline ids, at least one.')
    # Writing an endpoint re-points its URL: the caller must be allowed to edit every pipeline it names.
    for pipeline_id in versions.values():
        authorize_dag(user, _published(pipeline_id).dag_id, "PUT")
    if document.get("default_version") not in versions:
        raise _bad(f"default_version {document.get('default_version')!r} is not one of the versions.")
    if not isinstance(document.get("id"), str) or not document["id"].strip():
        raise _bad("id: give the endpoint's id (non-empty text).")
    if document.get("status", "Active") not in _STATUSES:
        raise _bad(f"status must be one of {', '.join(_STATUSES)}.")
    catalog().write_endpoint(name, {**document, "name": name})
    return {"name": name}


@app.get("/endpoints/{name}", summary="Read a pipeline endpoint")
def get_endpoint(name: str, user: GetUserDep) -> dict[str, Any]:
    return _read_endpoint(name)


@app.get("/endpoints", summary="List pipeline endpoints")
def list_endpoints(user: GetUserDep) -> list[dict[str, Any]]:
    return catalog().list_endpoints()


# -- v1's REST contract -----------------------------------------------------------------------------
class DataPathAssignment(BaseModel):
    model_config = ConfigDict(extra="allow")
    DataStoreName: str
    RelativePath: str = ""


class SubmitBody(BaseModel):
    """SDK v1's ``PipelineSubmissionInfo`` (unknown fields are ignored, as v1's service did)."""

    model_config = ConfigDict(extra="ignore")
    ExperimentName: str
    ParameterAssignments: dict[str, Any] = Field(default_factory=dict)
    DataPathAssignments: dict[str, DataPathAssignment] = Field(default_factory=dict)
    DataSetDefinitionValueAssignments: dict[str, Any] = Field(default_factory=dict)
    Description: str | None = None
    RunSource: str | None = None
    tags: dict[str, Any] | None = None
    ContinueRunOnStepFailure: bool | None = None


def _published(pipeline_id: str) -> DagDocument:
    for document in catalog().list_dags("published"):
        if document.meta.get("id") == pipeline_id:
            return document
    raise HTTPException(404, f"No published pipeline with id {pipeline_id!r}.")


def _datastores(workspace: str) -> set[str]:
    from airflow.models.connection import Connection
    from airflow.utils.session import create_session

    from aml_airflow_provider.deployment.base import DATASTORE_CONN_PREFIX

    prefix = f"{DATASTORE_CONN_PREFIX}{workspace}."
    with create_session() as session:
        ids = session.query(Connection.conn_id).filter(Connection.conn_id.startswith(prefix, autoescape=True))
        return {conn_id[len(prefix) :] for (conn_id,) in ids}


def submit_document(document: DagDocument, body: SubmitBody, user: Any) -> dict[str, Any]:
    """Check and run a submission of a published pipeline; the caller has found the document."""
    from airflow.api.common.trigger_dag import trigger_dag
    from airflow.exceptions import DagNotFound
    from airflow.utils.types import DagRunTriggeredByType

    from aml_airflow_provider.pipeline.core.published import ACTIVE, submit_conf

    authorize_dag(user, document.dag_id, "POST", DagAccessEntity.RUN)
    if document.meta.get("status", ACTIVE) != ACTIVE:
        raise HTTPException(409, f"Published pipeline {document.meta['id']} is disabled.")
    if body.DataSetDefinitionValueAssignments:
        raise HTTPException(
            400, "DataSetDefinitionValueAssignments: datasets are not supported; use DataPath parameters."
        )
    # It becomes the run's note, and PostgreSQL refuses NUL bytes in text.
    _checked(check_description, body.Description, "Description")
    assert document.spec is not None
    values: dict[str, Any] = dict(body.ParameterAssignments)
    values.update({name: dp.model_dump() for name, dp in body.DataPathAssignments.items()})
    conf = submit_conf(
        document.spec,
        _datastores(document.meta.get("workspace", document.spec.workspace)),
        experiment_name=body.ExperimentName,
        pipeline_parameters=values,
        from_strings=True,
        tags=body.tags,
        continue_on_step_failure=body.ContinueRunOnStepFailure,
    )
    try:
        dag_run = trigger_dag(
            document.dag_id,
            triggered_by=DagRunTriggeredByType.REST_API,
            conf=conf,
            triggering_user_name=user.get_name(),
            note=body.Description,
        )
    except DagNotFound:
        raise HTTPException(409, "Airflow has not loaded this pipeline yet; try again in a few seconds.") from None
    return {
        "Id": dag_run.run_id,
        "PipelineId": document.meta["id"],
        "ExperimentName": body.ExperimentName,
        "DagId": document.dag_id,
        "Status": "NotStarted",
    }


@app.post("/pipelines/{pipeline_id}/submit", summary="Submit a run of a published pipeline (v1's REST body)")
def submit_pipeline(pipeline_id: str, body: SubmitBody, user: GetUserDep) -> dict[str, Any]:
    return submit_document(_published(pipeline_id), body, user)


@app.post("/endpoints/{name}/submit", summary="Submit a run of a pipeline endpoint's default (or given) version")
def submit_endpoint(
    name: str,
    body: SubmitBody,
    user: GetUserDep,
    pipeline_version: str | None = Query(default=None, alias="pipelineVersion"),
) -> dict[str, Any]:
    document = _read_endpoint(name)
    version = pipeline_version or document["default_version"]
    if version not in document["versions"]:
        raise HTTPException(404, f"Pipeline endpoint {name!r} has no version {version!r}.")
    return submit_document(_published(document["versions"][version]), body, user)


@app.get("/pipelines/{pipeline_id}/runs/{run_id}", summary="Status of a run of a published pipeline")
def run_status(pipeline_id: str, run_id: str, user: GetUserDep) -> dict[str, Any]:
    from airflow.models.dagrun import DagRun
    from airflow.utils.session import create_session

    from aml_airflow_provider.pipeline.core.run import CANCELED_NOTE, RUN_STATUS

    document = _published(pipeline_id)
    authorize_dag(user, document.dag_id, "GET", DagAccessEntity.RUN)
    with create_session() as session:
        dr = session.query(DagRun).filter(DagRun.dag_id == document.dag_id, DagRun.run_id == run_id).one_or_none()
        if dr is None:
            raise HTTPException(404, f"No run {run_id!r} of published pipeline {pipeline_id!r}.")
        state = str(dr.state.value if hasattr(dr.state, "value") else dr.state)
        canceled = (dr.note or "").startswith(CANCELED_NOTE)
        return {
            "Id": run_id,
            "Status": "Canceled" if canceled else RUN_STATUS.get(state, "Running"),
            "State": state,
            "PipelineId": pipeline_id,
        }


@app.get("/pipelines", summary="Published pipelines and endpoints")
def list_pipelines(user: GetUserDep) -> dict[str, Any]:
    return pages.overview(readable(user, catalog().list_dags("published")), catalog().list_endpoints())


@app.get("/ui/", response_class=HTMLResponse, include_in_schema=False)
def ui(user: GetUserDep) -> HTMLResponse:
    data = pages.overview(readable(user, catalog().list_dags("published")), catalog().list_endpoints())
    return HTMLResponse(pages.render(data))
