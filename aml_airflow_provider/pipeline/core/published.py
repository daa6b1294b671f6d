"""``PublishedPipeline`` and ``PipelineEndpoint``: pipelines anyone can run later, by id or by a stable name.

A published pipeline is a DAG of its own (``aml_published_<name>_<id>``) whose document carries the
pipeline spec, with the source snapshots taken when it was published, and its facts (id, name,
version, status). A pipeline endpoint is a document naming numbered versions, each a published
pipeline, and a default version. Both are served over REST by the plugin (``/aml/...``).
"""

from __future__ import annotations

import dataclasses
import re
import uuid
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from aml_airflow_provider._names import check_description, has_control_characters
from aml_airflow_provider.dagfile import DagDocument, check_endpoint_name
from aml_airflow_provider.exceptions import InvalidNameError, UserErrorException
from aml_airflow_provider.spec import CONTINUE_CONF_KEY, EXPERIMENT_CONF_KEY, TAGS_CONF_KEY, PipelineSpec

if TYPE_CHECKING:
    from aml_airflow_provider.core.workspace import Workspace
    from aml_airflow_provider.pipeline.core.pipeline import Pipeline
    from aml_airflow_provider.pipeline.core.run import PipelineRun

PUBLISHED_KIND = "published"
ACTIVE, DISABLED = "Active", "Disabled"


def _slug(name: str) -> str:
    return re.sub(r"[^a-z0-9]+", "_", name.lower()).strip("_")[:60] or "pipeline"


def submit_conf(
    spec: PipelineSpec,
    workspace_datastores: set[str] | None,
    *,
    experiment_name: str,
    pipeline_parameters: Mapping[str, Any] | None = None,
    from_strings: bool = False,
    tags: Mapping[str, Any] | None = None,
    continue_on_step_failure: bool | None = None,
) -> dict[str, Any]:
    """The DAG-run conf of a submission: checked parameter values plus the run's own facts.

    :param workspace_datastores: names a ``datapath`` value may use (``None``: do not check)
    :param from_strings: accept values written as text (v1's REST ``ParameterAssignments``)
    """
    from aml_airflow_provider._names import check_experiment_name
    from aml_airflow_provider.exceptions import PipelineParameterError
    from aml_airflow_provider.parameters import resolve_parameter_values, run_tags
    from aml_airflow_provider.uris import DatastoreUri

    conf = resolve_parameter_values(spec, pipeline_parameters, from_strings=from_strings)
    if workspace_datastores is not None:
        for param in spec.parameters:
            if param.type == "datapath" and DatastoreUri.parse(conf[param.name]).datastore not in workspace_datastores:
                raise PipelineParameterError(
                    f"Pipeline parameter '{param.name}': datastore '{DatastoreUri.parse(conf[param.name]).datastore}' "
                    "is not registered in the workspace."
                )
    conf[EXPERIMENT_CONF_KEY] = check_experiment_name(experiment_name)
    if tags:
        conf[TAGS_CONF_KEY] = run_tags(tags)
    if continue_on_step_failure is not None:
        conf[CONTINUE_CONF_KEY] = bool(continue_on_step_failure)
    return conf


class PublishedPipeline:
    """A published pipeline (get one with :meth:`get`; make one with ``Pipeline.publish``)."""

    def __init__(self, workspace: Workspace, document: DagDocument) -> None:
        self._workspace = workspace
        self._document = document

    # -- facts ------------------------------------------------------------------------------------
    @property
    def _meta(self) -> Mapping[str, Any]:
        return self._document.meta

    id = property(lambda self: self._meta["id"])
    name = property(lambda self: self._meta["name"])
    description = property(lambda self: self._meta.get("description"))
    version = property(lambda self: self._meta.get("version"))
    status = property(lambda self: self._meta.get("status", ACTIVE))
    continue_on_step_failure = property(lambda self: self._meta.get("continue_on_step_failure", False))

    @property
    def dag_id(self) -> str:
        return self._document.dag_id

    @property
    def spec(self) -> PipelineSpec:
        assert self._document.spec is not None
        return self._document.spec

    @property
    def graph_id(self) -> str:
        return self.spec.fingerprint

    @property
    def total_run_steps(self) -> int:
        return len(self.spec.steps)

    @property
    def endpoint(self) -> str:
        """The absolute URL of the REST route that submits a run (v1's body, Airflow's bearer token)."""
        return f"{self._workspace._deployment.base_url}/aml/pipelines/{self.id}/submit"

    def get_step_names(self) -> list[str]:
        return [step.name for step in self.spec.steps]

    # -- lookup -----------------------------------------------------------------------------------
    @staticmethod
    def get(workspace: Workspace, id: str, _workflow_provider: Any = None, _service_endpoint: Any = None):
        """The published pipeline with this id."""
        for document in workspace._deployment.list_dags(PUBLISHED_KIND):
            if document.meta.get("id") == id:
                return PublishedPipeline(workspace, document)
        raise UserErrorException(f"No published pipeline with id {id!r} in workspace '{workspace.name}'.")

    @staticmethod
    def list(workspace: Workspace, active_only: bool = True, _service_endpoint: Any = None) -> list[PublishedPipeline]:
        pipelines = [PublishedPipeline(workspace, d) for d in workspace._deployment.list_dags(PUBLISHED_KIND)]
        return [p for p in pipelines if p.status == ACTIVE or not active_only]

    get_all = list

    # -- state ------------------------------------------------------------------------------------
    def _set_status(self, status: str) -> None:
        self._document = set_status(self._workspace, self._document, status, _title(self.name, self.version))

    def enable(self) -> None:
        """Make the pipeline runnable again (its DAG is unpaused)."""
        self._set_status(ACTIVE)

    def disable(self) -> None:
        """Stop the pipeline from being run (its DAG is paused; the endpoint refuses submissions)."""
        self._set_status(DISABLED)

    # -- runs -------------------------------------------------------------------------------------
    def submit(
        self,
        workspace: Workspace,
        experiment_name: str,
        pipeline_parameters: Mapping[str, Any] | None = None,
        parent_run_id: str | None = None,
        continue_on_step_failure: bool | None = None,
        tags: Mapping[str, str] | None = None,
    ) -> PipelineRun:
        """Run the published pipeline; ``experiment_name`` groups the run (its DAG is the pipeline's)."""
        from aml_airflow_provider.core.experiment import Experiment
        from aml_airflow_provider.pipeline.core.run import PipelineRun

        if self.status != ACTIVE:
            raise UserErrorException(f"Published pipeline '{self.name}' ({self.id}) is disabled; enable() it first.")
        conf = submit_conf(
            self.spec,
            set(workspace.datastores),
            experiment_name=experiment_name,
            pipeline_parameters=pipeline_parameters,
            tags=tags,
            continue_on_step_failure=continue_on_step_failure,
        )
        run_id = workspace._deployment.trigger(self.dag_id, conf)
        print(f"Submitted PipelineRun {run_id} (published pipeline '{self.name}')", flush=True)
        return PipelineRun(Experiment(workspace, experiment_name), run_id, _spec=self.spec, _dag_id=self.dag_id)

    def __repr__(self) -> str:
        return f"PublishedPipeline(name={self.name!r}, id={self.id!r}, version={self.version!r})"


def set_status(workspace: Workspace, document: DagDocument, status: str, title: str) -> DagDocument:
    """Record ``status`` (``Active``/``Disabled``) in a DAG document and (un)pause its DAG to match."""
    document = dataclasses.replace(document, meta={**document.meta, "status": status})
    workspace._deployment.write_dag(document, title=title)
    workspace._deployment.set_paused(document.dag_id, status != ACTIVE)
    return document


def _check_label(value: object, what: str) -> str:
    """A published pipeline's name or version: 1-255 characters, none of them control characters.

    They are written into the DAG file and shown by the UI; a NUL byte would make the DAG file
    unreadable to Python, and PostgreSQL refuses it in text columns.
    """
    if not isinstance(value, str) or not value.strip() or len(value) > 255:
        raise InvalidNameError(f"{what} {value!r}: give 1-255 characters.")
    if has_control_characters(value):
        raise InvalidNameError(f"{what} {value!r}: it contains control characters (NUL, newline, ...); remove them.")
    return value


def _title(name: str, version: str | None) -> str:
    return f"Published AML pipeline '{name}'" + (f" version {version}" if version else "")


def publish_pipeline(
    pipeline: Pipeline,
    name: str | None,
    description: str | None = None,
    version: str | None = None,
    continue_on_step_failure: bool | None = None,
) -> PublishedPipeline:
    """Publish ``pipeline`` (see :meth:`Pipeline.publish`)."""
    from aml_airflow_provider.pipeline.core.submit import pin_snapshots

    workspace = pipeline.workspace
    if not name:
        # v1 named it after the pipeline's description; its first line, as a name has one line.
        name = next(iter((pipeline.description or "").strip().splitlines()), "")[:255] or "pipeline"
    name = _check_label(name, "Published pipeline name")
    if version is not None:
        version = _check_label(str(version), f"Published pipeline '{name}': version")
    check_description(description, f"Published pipeline '{name}'")
    spec = dataclasses.replace(pipeline.spec, continue_on_step_failure=bool(continue_on_step_failure))
    spec = pin_snapshots(spec, workspace)  # later edits to the scripts do not change what was published
    pipeline_id = str(uuid.uuid4())
    meta = {
        "id": pipeline_id,
        "name": name,
        "description": description,
        "version": None if version is None else str(version),
        "status": ACTIVE,
        "continue_on_step_failure": bool(continue_on_step_failure),
        "workspace": workspace.name,
        "published": datetime.now(UTC).isoformat(),
    }
    document = DagDocument(
        dag_id=f"aml_published_{_slug(name)}_{pipeline_id[:8]}",
        kind=PUBLISHED_KIND,
        dag_kwargs={"tags": ["aml", "aml-published"], "description": description or spec.description},
        spec=spec,
        meta=meta,
    )
    deployment = workspace._deployment
    deployment.write_dag(document, title=_title(name, meta["version"]))
    deployment.set_paused(document.dag_id, False)  # published pipelines run when triggered
    return PublishedPipeline(workspace, document)


class PipelineEndpoint:
    """A stable name over numbered versions of a published pipeline, one of them the default (as v1).

    :param workspace: the workspace
    :param document: the endpoint's document
    """

    def __init__(self, workspace: Workspace, document: Mapping[str, Any]) -> None:
        self._workspace = workspace
        self._document = dict(document)

    id = property(lambda self: self._document["id"])
    name = property(lambda self: self._document["name"])
    description = property(lambda self: self._document.get("description"))
    default_version = property(lambda self: self._document["default_version"])
    status = property(lambda self: self._document.get("status", ACTIVE))

    @property
    def endpoint(self) -> str:
        """The absolute URL of the REST route that submits a run of the default (or ``?pipelineVersion=``) version."""
        return f"{self._workspace._deployment.base_url}/aml/endpoints/{self.name}/submit"

    @staticmethod
    def _to_published(workspace: Workspace, pipeline: Any, name: str, description: str | None) -> PublishedPipeline:
        from aml_airflow_provider.pipeline.core.pipeline import Pipeline

        if isinstance(pipeline, PublishedPipeline):
            return pipeline
        if isinstance(pipeline, Pipeline):
            return publish_pipeline(pipeline, name, description)
        raise UserErrorException(f"Pipeline endpoint '{name}': give a Pipeline or a PublishedPipeline.")

    @staticmethod
    def publish(workspace: Workspace, name: str, *args: Any, **kwargs: Any) -> PipelineEndpoint:
        """Create the endpoint ``name`` with ``pipeline`` as version ``"0"``.

        Takes v1's order ``(workspace, name, description, pipeline)`` and ``(workspace, name, pipeline,
        description)``, positional or by keyword.
        """
        values = dict(zip(("description", "pipeline"), args, strict=False))
        if args and not isinstance(args[0], str | type(None)):
            values = dict(zip(("pipeline", "description"), args, strict=False))
        values.update({k: v for k, v in kwargs.items() if k in ("description", "pipeline")})
        check_endpoint_name(name)
        if "pipeline" not in values:
            raise UserErrorException(f"Pipeline endpoint '{name}': publish needs a pipeline.")
        deployment = workspace._deployment
        if deployment.read_endpoint(name) is not None:
            raise UserErrorException(f"A pipeline endpoint named '{name}' already exists; use add() or add_default().")
        published = PipelineEndpoint._to_published(workspace, values["pipeline"], name, values.get("description"))
        document = {
            "id": str(uuid.uuid4()),
            "name": name,
            "description": values.get("description"),
            "default_version": "0",
            "versions": {"0": published.id},
            "status": ACTIVE,
            "workspace": workspace.name,
        }
        deployment.write_endpoint(name, document)
        return PipelineEndpoint(workspace, document)

    @staticmethod
    def get(workspace: Workspace, id: str | None = None, name: str | None = None, **kwargs: Any) -> PipelineEndpoint:
        for document in workspace._deployment.list_endpoints():
            if (name is not None and document["name"] == name) or (id is not None and document["id"] == id):
                return PipelineEndpoint(workspace, document)
        raise UserErrorException(
            f"No pipeline endpoint with name {name!r} / id {id!r} in workspace '{workspace.name}'."
        )

    @staticmethod
    def list(workspace: Workspace, active_only: bool = True, **kwargs: Any) -> list[PipelineEndpoint]:
        endpoints = [PipelineEndpoint(workspace, d) for d in workspace._deployment.list_endpoints()]
        return [e for e in endpoints if e.status == ACTIVE or not active_only]

    get_all = list

    def _save(self) -> None:
        self._workspace._deployment.write_endpoint(self.name, self._document)

    def _add(self, pipeline: Any) -> str:
        published = self._to_published(self._workspace, pipeline, self.name, self.description)
        version = str(max(int(v) for v in self._document["versions"]) + 1)
        self._document["versions"][version] = published.id
        return version

    def add(self, pipeline: Any) -> None:
        """Add ``pipeline`` as a new version (not the default)."""
        self._add(pipeline)
        self._save()

    def add_default(self, pipeline: Any) -> None:
        """Add ``pipeline`` as a new version and make it the default."""
        self._document["default_version"] = self._add(pipeline)
        self._save()

    def set_default_version(self, version: str | int) -> None:
        version = str(version)
        if version not in self._document["versions"]:
            raise UserErrorException(f"Pipeline endpoint '{self.name}' has no version {version!r}.")
        self._document["default_version"] = version
        self._save()

    def set_default(self, pipeline: PublishedPipeline) -> None:
        for version, pipeline_id in self._document["versions"].items():
            if pipeline_id == pipeline.id:
                self.set_default_version(version)
                return
        raise UserErrorException(f"Published pipeline {pipeline.id} is not a version of endpoint '{self.name}'.")

    def list_versions(self) -> list[dict[str, str]]:
        return [
            {"version": v, "pipeline_id": p}
            for v, p in sorted(self._document["versions"].items(), key=lambda x: int(x[0]))
        ]

    def get_pipeline(self, version: str | int | None = None) -> PublishedPipeline:
        """The published pipeline of ``version`` (default: the default version)."""
        version = str(self.default_version if version is None else version)
        if version not in self._document["versions"]:
            raise UserErrorException(f"Pipeline endpoint '{self.name}' has no version {version!r}.")
        return PublishedPipeline.get(self._workspace, self._document["versions"][version])

    def list_pipelines(self) -> list[PublishedPipeline]:
        return [PublishedPipeline.get(self._workspace, p) for p in self._document["versions"].values()]

    def submit(
        self,
        experiment_name: str,
        pipeline_parameters: Mapping[str, Any] | None = None,
        parent_run_id: str | None = None,
        pipeline_version: str | int | None = None,
    ) -> PipelineRun:
        """Run the default version (or ``pipeline_version``)."""
        return self.get_pipeline(pipeline_version).submit(self._workspace, experiment_name, pipeline_parameters)

    def __repr__(self) -> str:
        return f"PipelineEndpoint(name={self.name!r}, default_version={self.default_version!r})"
