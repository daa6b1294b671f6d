"""``DatabricksStep``: run a notebook, Python script or JAR as a Databricks job run (or on local Spark)."""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from aml_airflow_provider.core.compute import (
    LOCAL_COMPUTE_NAME,
    ComputeTarget,
    DatabricksCompute,
    LocalCompute,
)
from aml_airflow_provider.core.databricks import (
    DEFAULT_NODE_TYPE,
    DEFAULT_SPARK_ENV,
    DEFAULT_SPARK_VERSION,
    LIBRARY_KINDS,
    DatabricksCluster,
    library_payload,
)
from aml_airflow_provider.core.runconfig import RunConfiguration
from aml_airflow_provider.exceptions import ScriptNotFoundError, StepDefinitionError
from aml_airflow_provider.pipeline.core.builder import PipelineStep, StepContext
from aml_airflow_provider.pipeline.core.graph import PipelineParameter
from aml_airflow_provider.pipeline.steps.python_script_step import (
    _check_script_name,
    check_script,
    source_folder,
    warn_hash_paths,
)

if TYPE_CHECKING:
    from aml_airflow_provider.spec import StepSpec

_CLUSTER_ARGS = (
    "spark_version",
    "node_type",
    "instance_pool_id",
    "num_workers",
    "min_workers",
    "max_workers",
    "spark_env_variables",
    "spark_conf",
    "init_scripts",
    "cluster_log_dbfs_path",
)
_VALUE_TYPES = (str, int, float, bool, PipelineParameter)


def _check_values(values: Any, what: str, where: str, *, mapping: bool) -> None:
    """Parameter values are text, numbers, booleans or PipelineParameters of any type (v1 took strings only)."""
    if values is None:
        return
    if mapping and not isinstance(values, Mapping):
        raise StepDefinitionError(f"{where}: {what} must be a dict of name -> value, not {type(values).__name__}.")
    if not mapping and not isinstance(values, list | tuple):
        raise StepDefinitionError(f"{where}: {what} must be a list, not {type(values).__name__}.")
    for value in values.values() if mapping else values:
        if not isinstance(value, _VALUE_TYPES):
            raise StepDefinitionError(
                f"{where}: {what} holds a {type(value).__name__}; give str, int, float, bool or PipelineParameter "
                "values (data reaches the job through inputs and outputs)."
            )


def _check_int(value: Any, what: str, where: str, minimum: int = 0) -> int | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | str) or not str(value).strip().isdigit():
        raise StepDefinitionError(f"{where}: {what} must be a whole number, not {value!r}.")
    number = int(value)
    if number < minimum:
        raise StepDefinitionError(f"{where}: {what} must be at least {minimum}, not {number}.")
    return number


def _check_str_dict(value: Any, what: str, where: str) -> dict[str, str]:
    if value is None:
        return {}
    if not isinstance(value, Mapping) or not all(isinstance(k, str) for k in value):
        raise StepDefinitionError(f"{where}: {what} must be a dict with string keys.")
    return {k: str(v) for k, v in value.items()}


class DatabricksStep(PipelineStep):
    """Run a Databricks notebook, Python script or JAR as a one-time job run, as in SDK v1.

    Give exactly one of ``notebook_path``, ``python_script_path``, ``python_script_name`` (with
    ``source_directory``, uploaded to DBFS) or ``main_class_name``; and either ``existing_cluster_id`` or
    a new job cluster (``num_workers``, or ``min_workers`` and ``max_workers``). Inputs and outputs
    reach the job as v1 passed them: a notebook gets a widget per port holding its storage URI
    (``wasbs://...``), a script gets ``-<port> <uri>`` arguments.

    On a ``DatabricksCompute`` attached with ``local=True`` (or ``compute_target="local"``), the script or
    notebook runs with ``spark-submit --master local[*]`` on the Airflow worker instead, with local paths.

    :param name: the step's name
    :param inputs: data the job reads
    :param outputs: ``PipelineData`` the job writes
    :param existing_cluster_id: run on this interactive cluster
    :param spark_version: new cluster's runtime (default ``10.4.x-scala2.12``)
    :param node_type: new cluster's VM type (default ``Standard_D3_v2``; not with ``instance_pool_id``)
    :param instance_pool_id: new cluster's instance pool
    :param num_workers: fixed size of the new cluster
    :param min_workers: autoscaling lower bound (with ``max_workers``)
    :param max_workers: autoscaling upper bound (with ``min_workers``)
    :param spark_env_variables: new cluster's environment variables
    :param spark_conf: new cluster's Spark configuration
    :param init_scripts: DBFS paths of init scripts (deprecated in v1)
    :param cluster_log_dbfs_path: DBFS folder for cluster logs
    :param notebook_path: workspace path of the notebook to run
    :param notebook_params: ``{widget: value}``; values may be PipelineParameters of any type
    :param python_script_path: DBFS path of the script to run
    :param python_script_params: script arguments; values may be PipelineParameters of any type
    :param main_class_name: JAR entry class (with ``jar_libraries``)
    :param jar_params: JAR arguments; values may be PipelineParameters of any type
    :param python_script_name: script in ``source_directory``, uploaded before the run
    :param source_directory: folder uploaded with ``python_script_name``
    :param hash_paths: deprecated in v1 and ignored: the whole source directory counts
    :param run_name: the Databricks run's name (default: the step's name)
    :param timeout_seconds: the Databricks run's timeout
    :param runconfig: a ``RunConfiguration`` whose ``environment.databricks`` holds the cluster and libraries
    :param maven_libraries: ``MavenLibrary`` objects
    :param pypi_libraries: ``PyPiLibrary`` objects
    :param egg_libraries: ``EggLibrary`` objects
    :param jar_libraries: ``JarLibrary`` objects
    :param rcran_libraries: ``RCranLibrary`` objects
    :param compute_target: a ``DatabricksCompute``, its name, or ``"local"`` for local Spark
    :param allow_reuse: let a later run reuse this step's results when nothing changed
    :param version: a free-form tag that changes the step's identity
    :param permit_cluster_restart: v1 let AML restart an existing cluster to set storage credentials;
        accepted with ``existing_cluster_id`` only (no credentials are ever sent to a cluster here)
    """

    kind = "DatabricksStep"
    kind_version = 1

    def __init__(
        self,
        name: str,
        inputs: list[Any] | None = None,
        outputs: list[Any] | None = None,
        existing_cluster_id: str | None = None,
        spark_version: str | None = None,
        node_type: str | None = None,
        instance_pool_id: str | None = None,
        num_workers: int | None = None,
        min_workers: int | None = None,
        max_workers: int | None = None,
        spark_env_variables: dict[str, str] | None = None,
        spark_conf: dict[str, str] | None = None,
        init_scripts: list[str] | None = None,
        cluster_log_dbfs_path: str | None = None,
        notebook_path: str | None = None,
        notebook_params: dict[str, Any] | None = None,
        python_script_path: str | None = None,
        python_script_params: list[Any] | None = None,
        main_class_name: str | None = None,
        jar_params: list[Any] | None = None,
        python_script_name: str | None = None,
        source_directory: str | os.PathLike[str] | None = None,
        hash_paths: list[str] | None = None,
        run_name: str | None = None,
        timeout_seconds: int | None = None,
        runconfig: RunConfiguration | None = None,
        maven_libraries: list[Any] | None = None,
        pypi_libraries: list[Any] | None = None,
        egg_libraries: list[Any] | None = None,
        jar_libraries: list[Any] | None = None,
        rcran_libraries: list[Any] | None = None,
        compute_target: Any = None,
        allow_reuse: bool = True,
        version: str | None = None,
        permit_cluster_restart: bool | None = None,
    ) -> None:
        where = f"DatabricksStep '{name}'"
        given = dict(locals())
        # Every check comes before PipelineStep.__init__, which claims the outputs last.
        task = self._check_task(given, where)
        _check_values(notebook_params, "notebook_params", where, mapping=True)
        _check_values(python_script_params, "python_script_params", where, mapping=False)
        _check_values(jar_params, "jar_params", where, mapping=False)
        if runconfig is not None and not isinstance(runconfig, RunConfiguration):
            raise StepDefinitionError(f"{where}: runconfig must be a RunConfiguration, not {type(runconfig).__name__}.")
        section = runconfig.environment.databricks if runconfig is not None else None
        self.cluster = self._check_cluster(given, section, where)
        self.libraries = self._check_libraries(given, section, where)
        if run_name is not None and not isinstance(run_name, str):
            raise StepDefinitionError(f"{where}: run_name must be a string.")
        self.timeout_seconds = _check_int(timeout_seconds, "timeout_seconds", where)
        if not isinstance(allow_reuse, bool):
            raise StepDefinitionError(f"{where}: allow_reuse must be True or False.")
        self._compute = self._check_compute(compute_target, where)
        warn_hash_paths(hash_paths)
        self.task = task
        # Only python_script_name uploads a folder; the pipeline's default folder holds local notebooks.
        self.source_directory = task.get("source_directory")
        self.run_name = run_name
        self.compute_target = compute_target
        self.allow_reuse = allow_reuse
        self.version = None if version is None else str(version)
        script_params = jar_params if task["kind"] == "jar" else python_script_params
        super().__init__(
            name, inputs, outputs, arguments=list(script_params or ()), named_arguments=notebook_params or {}
        )

    # -- checks -----------------------------------------------------------------------------------
    def _check_task(self, given: dict[str, Any], where: str) -> dict[str, Any]:
        kinds = {
            "notebook": given["notebook_path"],
            "python_script": given["python_script_path"],
            "python_script_name": given["python_script_name"],
            "jar": given["main_class_name"],
        }
        chosen = [kind for kind, value in kinds.items() if value is not None]
        if len(chosen) != 1:
            raise StepDefinitionError(
                f"{where}: give exactly one of notebook_path, python_script_path, python_script_name or "
                f"main_class_name (got {len(chosen)})."
            )
        kind = chosen[0]
        for params, owner in (
            ("notebook_params", "notebook"),
            ("python_script_params", "python_script"),
            ("jar_params", "jar"),
        ):
            allowed = (owner,) if owner != "python_script" else ("python_script", "python_script_name")
            if given[params] and kind not in allowed:
                raise StepDefinitionError(f"{where}: {params} is for a {owner.replace('_', ' ')} step, not this one.")
        if (given["source_directory"] is not None) != (kind == "python_script_name"):
            raise StepDefinitionError(f"{where}: python_script_name and source_directory go together.")
        if kind == "jar" and not given["jar_libraries"]:
            section = given["runconfig"].environment.databricks if given["runconfig"] else None
            if not (section and section.jar_libraries):
                raise StepDefinitionError(
                    f"{where}: main_class_name needs jar_libraries holding the class (JarLibrary('dbfs:/...'))."
                )
        value = kinds[kind]
        if not isinstance(value, str) or not value.strip() or "\x00" in value:
            raise StepDefinitionError(f"{where}: {kind.replace('_', ' ')} path/name must be a non-empty string.")
        task: dict[str, Any] = {"kind": kind, "target": value}
        if kind == "python_script_name":
            task["target"] = _check_script_name(value, given["name"])
            source = source_folder(given["source_directory"], str(given["name"]))
            check_script(source, task["target"], str(given["name"]), "python_script_name")
            task["source_directory"] = source
        return task

    def _check_cluster(self, given: dict[str, Any], section: Any, where: str) -> dict[str, Any]:
        """The Jobs API cluster part: ``{"existing_cluster_id": ...}`` or ``{"new_cluster": {...}}``."""
        from_args = [arg for arg in _CLUSTER_ARGS if given[arg] is not None]
        existing = given["existing_cluster_id"]
        runconfig_cluster = getattr(section, "cluster", None)
        if existing is not None:
            if not isinstance(existing, str) or not existing.strip():
                raise StepDefinitionError(f"{where}: existing_cluster_id must be a cluster id string.")
            if from_args or runconfig_cluster is not None:
                raise StepDefinitionError(
                    f"{where}: existing_cluster_id runs on an existing cluster; do not also give new-cluster "
                    f"settings ({', '.join(from_args) or 'runconfig.environment.databricks.cluster'})."
                )
            return {"existing_cluster_id": existing, "permit_cluster_restart": bool(given["permit_cluster_restart"])}
        if given["permit_cluster_restart"] is not None:
            raise StepDefinitionError(f"{where}: permit_cluster_restart is only allowed with existing_cluster_id.")
        if runconfig_cluster is not None:
            if from_args:
                raise StepDefinitionError(
                    f"{where}: the cluster comes either from arguments ({', '.join(from_args)}) or from "
                    "runconfig.environment.databricks.cluster, not both."
                )
            if not isinstance(runconfig_cluster, DatabricksCluster):
                raise StepDefinitionError(
                    f"{where}: runconfig.environment.databricks.cluster must be a DatabricksCluster."
                )
            settings = {arg: getattr(runconfig_cluster, arg) for arg in _CLUSTER_ARGS}
        else:
            settings = {arg: given[arg] for arg in _CLUSTER_ARGS}
        return {"new_cluster": self._new_cluster(settings, where)}

    @staticmethod
    def _new_cluster(s: dict[str, Any], where: str) -> dict[str, Any]:
        if s["node_type"] is not None and s["instance_pool_id"] is not None:
            raise StepDefinitionError(f"{where}: give node_type or instance_pool_id, not both.")
        num = _check_int(s["num_workers"], "num_workers", where)
        low = _check_int(s["min_workers"], "min_workers", where)
        high = _check_int(s["max_workers"], "max_workers", where, minimum=1)
        if num is not None and (low is not None or high is not None):
            raise StepDefinitionError(f"{where}: give num_workers or min_workers and max_workers, not both.")
        if num is None and (low is None or high is None):
            raise StepDefinitionError(
                f"{where}: a new cluster needs num_workers, or both min_workers and max_workers (autoscaling); "
                "or give existing_cluster_id."
            )
        if low is not None and high is not None and low > high:
            raise StepDefinitionError(f"{where}: min_workers ({low}) is greater than max_workers ({high}).")
        cluster: dict[str, Any] = {"spark_version": s["spark_version"] or DEFAULT_SPARK_VERSION}
        if s["instance_pool_id"] is not None:
            cluster["instance_pool_id"] = str(s["instance_pool_id"])
        else:
            cluster["node_type_id"] = str(s["node_type"] or DEFAULT_NODE_TYPE)
        if num is not None:
            cluster["num_workers"] = num
        else:
            cluster["autoscale"] = {"min_workers": low, "max_workers": high}
        env = _check_str_dict(s["spark_env_variables"], "spark_env_variables", where)
        cluster["spark_env_vars"] = env or dict(DEFAULT_SPARK_ENV)
        conf = _check_str_dict(s["spark_conf"], "spark_conf", where)
        if conf:
            cluster["spark_conf"] = conf
        scripts = s["init_scripts"]
        if scripts:
            if not isinstance(scripts, list | tuple) or not all(isinstance(p, str) for p in scripts):
                raise StepDefinitionError(f"{where}: init_scripts must be a list of DBFS paths.")
            cluster["init_scripts"] = [{"dbfs": {"destination": p}} for p in scripts]
        if s["cluster_log_dbfs_path"]:
            cluster["cluster_log_conf"] = {"dbfs": {"destination": str(s["cluster_log_dbfs_path"])}}
        return cluster

    @staticmethod
    def _check_libraries(given: dict[str, Any], section: Any, where: str) -> list[dict[str, Any]]:
        libraries = []
        for kind in LIBRARY_KINDS:
            from_args, from_runconfig = given[kind], list(getattr(section, kind, None) or ())
            if from_args and from_runconfig:
                raise StepDefinitionError(
                    f"{where}: {kind} comes either from the argument or from runconfig.environment.databricks, "
                    "not both."
                )
            libraries += library_payload(kind, from_args or from_runconfig, where)
        return libraries

    @staticmethod
    def _check_compute(target: Any, where: str) -> str | None:
        """``None`` and ``"local"`` mean local Spark; a name is looked up when the step runs."""
        if target is None or isinstance(target, LocalCompute) or target == LOCAL_COMPUTE_NAME:
            return None
        if isinstance(target, DatabricksCompute):
            return target.name
        if isinstance(target, ComputeTarget):
            raise StepDefinitionError(
                f"{where}: compute_target must be a DatabricksCompute (or 'local' for Spark on the worker), "
                f"not a {type(target).__name__}."
            )
        if isinstance(target, str) and target.strip():
            return target
        raise StepDefinitionError(f"{where}: compute_target must be a DatabricksCompute or its name, not {target!r}.")

    def _check(self, ctx: StepContext) -> list[str]:
        if self.task["kind"] != "python_script_name":
            return []
        try:
            check_script(self.task["source_directory"], self.task["target"], self.name, "python_script_name")
        except ScriptNotFoundError as exc:
            return [str(exc)]
        return []

    # -- spec -------------------------------------------------------------------------------------
    def _to_spec(self, ctx: StepContext) -> StepSpec:
        config = {
            "task_kind": self.task["kind"],
            "task_target": self.task["target"],
            "source_directory": str(self.source_directory) if self.source_directory else None,
            # Where a local-Spark run finds a notebook or script given by a relative path.
            "local_root": str(ctx.source_directory(self)),
            "notebook_params": dict(self._named_arguments),
            "script_params": list(self._arguments),
            "cluster": self.cluster,
            "libraries": self.libraries,
            "run_name": self.run_name or self.name,
            "timeout_seconds": self.timeout_seconds,
        }
        return self._base_spec(
            ctx, config=config, compute=self._compute, allow_reuse=self.allow_reuse, version=self.version
        )
