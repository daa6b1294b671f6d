"""``DatabricksStepOperator``: a DatabricksStep as a one-time Databricks job run, or on local Spark."""

from __future__ import annotations

import base64
import hashlib
import re
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from airflow.sdk import BaseOperatorLink
from airflow.sdk.exceptions import AirflowException
from airflow.sdk.execution_time.xcom import XCom

from aml_airflow_provider._names import data_env_name
from aml_airflow_provider.exceptions import StepRunError
from aml_airflow_provider.operators.base import AmlStepOperator, FreshRun
from aml_airflow_provider.operators.remote import JobOutcome, RemoteStepOperator
from aml_airflow_provider.runtime.contract import PARAMETER_TOKEN, expand
from aml_airflow_provider.runtime.launcher import StepProcess

if TYPE_CHECKING:
    from airflow.models.taskinstancekey import TaskInstanceKey
    from airflow.sdk import BaseOperator, Context

    from aml_airflow_provider.hooks.compute import SparkTarget
    from aml_airflow_provider.spec import StepSpec
    from aml_airflow_provider.storage.base import DatastoreBackend

#: XCom keys, as the Databricks provider names them.
XCOM_RUN_ID_KEY = "run_id"
XCOM_RUN_PAGE_URL_KEY = "run_page_url"
#: The value the notebook gave ``dbutils.notebook.exit``.
XCOM_NOTEBOOK_RESULT_KEY = "notebook_result"
#: Kept across tries of the task (Airflow's task state store), so a retry after a worker crash re-attaches.
RUN_ID_STATE_KEY = "databricks_run_id"
#: Where ``python_script_name`` + ``source_directory`` are uploaded: one folder per (content-addressed) snapshot.
DBFS_SNAPSHOT_ROOT = "dbfs:/aml/snapshots"
_DBFS_BLOCK = 1024 * 1024
_TASK_KINDS = ("notebook", "python_script", "python_script_name", "jar")
_TERMINAL_OK = "SUCCESS"


class DatabricksRunLink(BaseOperatorLink):
    """The Databricks run page of the step (pushed when the run was submitted)."""

    name = "See Databricks Job Run"

    def get_link(self, operator: BaseOperator, *, ti_key: TaskInstanceKey) -> str:
        return XCom.get_value(key=XCOM_RUN_PAGE_URL_KEY, ti_key=ti_key) or ""


class DatabricksStepOperator(RemoteStepOperator):
    """Run a DatabricksStep: submit a one-time run (Jobs API ``runs/submit``) and wait for it, or run the
    script or notebook with ``spark-submit --master local[*]`` on the worker when the compute is local.

    Inputs and outputs reach the job as in SDK v1: a notebook gets a widget per port holding the storage
    URI (``wasbs://...``); a script gets ``-<port> <uri>`` arguments after its own. Outputs are pushed to
    XCom when the run succeeds (a failed run's partial outputs are never handed on); the run id, run page
    URL and a notebook's exit value are pushed too.

    :param task_kind: ``notebook``, ``python_script``, ``python_script_name`` or ``jar``
    :param task_target: the notebook path, script path, script name or main class (templated)
    :param source_directory: for ``python_script_name``: the folder uploaded (as a source snapshot) (templated)
    :param snapshot: id of a stored source snapshot to upload instead (set by ``submit`` and ``publish``)
    :param local_root: where local Spark finds a notebook or script given by a relative path
    :param notebook_params: widget values (templated)
    :param script_params: script or JAR arguments (templated)
    :param cluster: ``{"existing_cluster_id": ...}`` or ``{"new_cluster": {...}}`` in Jobs API form (templated)
    :param libraries: Jobs API ``libraries`` entries
    :param run_name: the Databricks run's name (templated)
    :param timeout_seconds: the Databricks run's timeout
    :param databricks_conn_id: the Databricks connection (default: the one of ``compute_target``)
    :param local: run on local Spark (default: as the compute target is registered; no compute = local)
    :param spark_conf: extra Spark settings for local runs
    :param databricks_retry_limit: API retries (the Databricks hook's ``retry_limit``)
    :param databricks_retry_delay: first wait between API retries, in seconds
    :param kwargs: see :class:`~aml_airflow_provider.operators.remote.RemoteStepOperator` (``deferrable``,
        ``polling_period_seconds``; default ``[aml] databricks_poll_seconds``) and
        :class:`~aml_airflow_provider.operators.base.AmlStepOperator`
    """

    template_fields: Sequence[str] = (
        *AmlStepOperator.template_fields,
        "task_target",
        "source_directory",
        "notebook_params",
        "script_params",
        "cluster",
        "run_name",
        "databricks_conn_id",
    )
    template_fields_renderers = {
        **AmlStepOperator.template_fields_renderers,
        "notebook_params": "json",
        "script_params": "json",
        "cluster": "json",
    }
    operator_extra_links = (*AmlStepOperator.operator_extra_links, DatabricksRunLink())
    ui_color = "#ffd9cc"
    job_id_key = XCOM_RUN_ID_KEY
    job_url_key = XCOM_RUN_PAGE_URL_KEY
    job_noun = "Databricks run"
    poll_config_key = "databricks_poll_seconds"
    kind = "DatabricksStep"
    kind_version = 1

    def __init__(
        self,
        *,
        task_kind: str,
        task_target: str,
        source_directory: str | None = None,
        snapshot: str | None = None,
        local_root: str | None = None,
        notebook_params: Mapping[str, str] | None = None,
        script_params: Sequence[str] = (),
        cluster: Mapping[str, Any] | None = None,
        libraries: Sequence[Mapping[str, Any]] = (),
        run_name: str | None = None,
        timeout_seconds: int | None = None,
        databricks_conn_id: str | None = None,
        local: bool | None = None,
        spark_conf: Mapping[str, str] | None = None,
        databricks_retry_limit: int = 3,
        databricks_retry_delay: float = 1,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        if task_kind not in _TASK_KINDS:
            raise ValueError(f"Task '{self.task_id}': task_kind {task_kind!r} must be one of {', '.join(_TASK_KINDS)}.")
        if task_kind == "python_script_name" and not (source_directory or snapshot):
            raise ValueError(f"Task '{self.task_id}': python_script_name needs source_directory (or snapshot).")
        self.task_kind = task_kind
        self.task_target = task_target
        self.source_directory = source_directory
        self.snapshot = snapshot
        self.local_root = local_root
        self.notebook_params = dict(notebook_params or {})
        self.script_params = list(script_params)
        self.cluster = dict(cluster or {})
        self.libraries = [dict(lib) for lib in libraries]
        self.run_name = run_name
        self.timeout_seconds = timeout_seconds
        self.databricks_conn_id = databricks_conn_id
        self.local = local
        self.spark_conf = dict(spark_conf or {})
        self.databricks_retry_limit = databricks_retry_limit
        self.databricks_retry_delay = databricks_retry_delay
        self._target: SparkTarget | None = None
        self._databricks_hook = None

    @classmethod
    def kwargs_from_config(cls, step: StepSpec) -> dict[str, Any]:
        config = step.config
        return {
            "task_kind": config["task_kind"],
            "task_target": config["task_target"],
            "source_directory": config.get("source_directory"),
            "snapshot": config.get("snapshot"),
            "local_root": config.get("local_root"),
            "notebook_params": dict(config["notebook_params"]),
            "script_params": list(config["script_params"]),
            "cluster": dict(config["cluster"]),
            "libraries": list(config["libraries"]),
            "run_name": config.get("run_name"),
            "timeout_seconds": config.get("timeout_seconds"),
        }

    # -- where it runs ----------------------------------------------------------------------------
    def spark_target(self) -> SparkTarget:
        """Local Spark, or the Databricks connection to submit to (looked up once per execution)."""
        from aml_airflow_provider.core.compute import LOCAL_COMPUTE_NAME
        from aml_airflow_provider.hooks.compute import AmlComputeHook, SparkTarget

        if self._target is None:
            if self.local is not None or self.databricks_conn_id:
                self._target = SparkTarget(local=bool(self.local), databricks_conn_id=self.databricks_conn_id)
            elif self.compute_target in (None, LOCAL_COMPUTE_NAME):
                self._target = SparkTarget(local=True)
            else:
                self._target = AmlComputeHook.for_compute(self.workspace, self.compute_target).spark_target()
        return self._target

    def _hook(self, conn_id: str):
        from airflow.providers.databricks.hooks.databricks import DatabricksHook

        return DatabricksHook(
            conn_id,
            retry_limit=self.databricks_retry_limit,
            retry_delay=self.databricks_retry_delay,
            caller=type(self).__name__,
        )

    # -- what the base class asks -----------------------------------------------------------------
    def source_snapshot(self, script_dir: Path, store: DatastoreBackend) -> str | None:
        if self.task_kind != "python_script_name":
            return None
        from aml_airflow_provider.runtime import snapshot

        return snapshot.for_step(self.snapshot, Path(self.source_directory or ""), script_dir, store)

    def prepare_workdir(self, script_dir: Path, work_dir: Path, *, store: DatastoreBackend, snapshot_id: str | None):
        from aml_airflow_provider.runtime import snapshot

        script_dir.mkdir(parents=True, exist_ok=True)
        if self.task_kind == "python_script_name":
            snapshot.fill_script_dir(self.snapshot, script_dir, store, work_dir)
            if not (script_dir / self.task_target).is_file():
                raise StepRunError(
                    f"Step '{self.step_name}': script {self.task_target!r} is not in source snapshot {snapshot_id} "
                    "(is it ignored by .amlignore/.gitignore?)."
                )

    def fingerprint_components(self, parameter_env: dict[str, str]) -> dict[str, Any]:
        where = f"Step '{self.step_name}'"
        components: dict[str, Any] = {
            "task": [self.task_kind, self.task_target],
            "notebook_params": {
                k: expand(str(v), parameter_env, where=where, only=PARAMETER_TOKEN)
                for k, v in self.notebook_params.items()
            },
            "script_params": [
                expand(str(a), parameter_env, where=where, only=PARAMETER_TOKEN) for a in self.script_params
            ],
            "cluster": self.cluster,
            "libraries": self.libraries,
        }
        local_file = self._local_file() if self.task_kind in ("notebook", "python_script") else None
        if local_file is not None:
            # A local notebook or script counts by its content, as a snapshot would.
            components["local_file_sha256"] = hashlib.sha256(local_file.read_bytes()).hexdigest()
        return components

    def _local_file(self) -> Path | None:
        """The notebook or script on this worker, for a local run (``None`` if there is none)."""
        if self.task_target.startswith("dbfs:") or not self.spark_target().local:
            return None
        path = Path(self.task_target)
        candidates = [path] if path.is_absolute() else [Path(self.local_root or ".") / path]
        candidates += [c.with_name(c.name + ".py") for c in candidates if c.suffix != ".py"]
        for candidate in candidates:
            if candidate.is_file():
                return candidate
        raise StepRunError(
            f"Step '{self.step_name}': {self.task_kind.replace('_', ' ')} {self.task_target!r} is not a file on this "
            f"worker (looked for {', '.join(str(c) for c in candidates)}); local Spark runs a notebook exported in "
            "Databricks source format (.py) or a local script."
        )

    # -- the arguments and widgets of the run -----------------------------------------------------
    def _job_inputs(self, contract: Mapping[str, str], locations: Mapping[str, str], run_context: Sequence[str]):
        """(widgets, arguments) for the job: the step's own, expanded, then one per port, then v1's run context."""
        where = f"Step '{self.step_name}'"
        widgets = {
            k: expand(str(v), contract, where=f"{where} notebook_params") for k, v in self.notebook_params.items()
        }
        args = [expand(str(a), contract, where=f"{where} argument {a!r}") for a in self.script_params]
        for port, location in locations.items():
            widgets[port] = location
            args += [f"-{port}", location]
        return widgets, [*args, *run_context]

    def _run_context(self, ti: Any, script_directory: str | None) -> list[str]:
        # v1 appended these so a script could rebuild its run context; a script must tolerate them.
        args = ["--AZUREML_RUN_ID", f"{ti.run_id}.{ti.task_id}", "--AZUREML_ARM_WORKSPACE_NAME", self.workspace]
        if script_directory:
            args += ["--AZUREML_SCRIPT_DIRECTORY_NAME", script_directory]
        return args

    # -- local Spark ------------------------------------------------------------------------------
    def execute(self, context: Context) -> None:
        self._target = self._databricks_hook = None
        target = self.spark_target()
        self.log.info(
            "Step '%s' runs %s",
            self.step_name,
            "on local Spark on this worker" if target.local else f"on Databricks ({target.databricks_conn_id})",
        )
        return super().execute(context)

    def run_step(
        self,
        context: Context,
        *,
        script_dir: Path,
        data_env: dict[str, str],
        parameter_env: dict[str, str],
        tracking_dir: Path,
        driver_log: Path,
        should_stop: Callable[[], str | None],
    ) -> None:
        from aml_airflow_provider.runtime import spark_local

        ti = context["ti"]
        where = f"Step '{self.step_name}'"
        contract = {**parameter_env, **data_env}
        ports = {name[len(data_env_name("")) :]: path for name, path in data_env.items()}
        if self.task_kind == "jar":
            raise StepRunError(
                f"{where}: local Spark runs Python scripts and notebooks; a JAR step needs a Databricks workspace."
            )
        script_directory = str(script_dir) if self.task_kind == "python_script_name" else None
        widgets, args = self._job_inputs(contract, ports, self._run_context(ti, script_directory))
        exit_file = driver_log.parent / "notebook-exit.txt"
        if self.task_kind == "notebook":
            notebook = self._local_file()
            if not spark_local.is_notebook_source(notebook):
                raise StepRunError(
                    f"{where}: {notebook} is not a notebook in Databricks source format "
                    "(its first line must be '# Databricks notebook source')."
                )
            argv = spark_local.notebook_command(str(notebook), widgets, str(exit_file), conf=self.spark_conf)
        else:
            script = script_dir / self.task_target if script_directory else self._local_file()
            argv = spark_local.script_command(str(script), args, conf=self.spark_conf)
        env = spark_local.spark_environment(
            self.script_environment(ti, tracking_dir, contract),
            (self.cluster.get("new_cluster") or {}).get("spark_env_vars"),
        )
        with open(driver_log, "a", encoding="utf-8") as fh:
            line = f"Running on local Spark: {argv[-1] if self.task_kind == 'notebook' else script} with {args}"
            self.log.info("%s", line)
            fh.write(line + "\n")
        self.run_process(
            # spark-submit relays the driver's stderr on its stdout: quote both in the error.
            StepProcess(argv, script_dir, env, self.log, driver_log, tail_stdout=True),
            should_stop,
            failure=lambda code: f"{where} failed on local Spark (exit code {code}).",
        )
        exit_value = spark_local.read_exit_value(exit_file)
        if exit_value is not None:
            ti.xcom_push(key=XCOM_NOTEBOOK_RESULT_KEY, value=exit_value)

    # -- Databricks -------------------------------------------------------------------------------
    def runs_remotely(self) -> bool:
        return not self.spark_target().local

    @property
    def hook(self):
        if self._databricks_hook is None:
            self._databricks_hook = self._hook(self.spark_target().databricks_conn_id or "")
        return self._databricks_hook

    def remote_uri(self, backend: DatastoreBackend, path: str) -> str:
        return backend.spark_uri(path)

    def start_job(self, run: FreshRun, locations: Mapping[str, str]) -> tuple[int, str]:
        hook = self.hook
        state_store = run.context.get("task_state_store")
        run_id = self._reattach(hook, state_store)
        if run_id is None:
            run_id = self._submit(run, hook, locations)
            if state_store is not None:
                state_store.set(RUN_ID_STATE_KEY, run_id)
        return run_id, hook.get_run_page_url(run_id)

    def job_state(self, job_id: int) -> tuple[bool, str]:
        state = self.hook.get_run_state(job_id)
        return state.is_terminal, str(state)

    def job_trigger(self, job_id: int, job_url: str):
        from airflow.providers.databricks.triggers.databricks import DatabricksExecutionTrigger

        return DatabricksExecutionTrigger(
            run_id=job_id,
            databricks_conn_id=self.spark_target().databricks_conn_id,
            polling_period_seconds=self.poll_seconds,
            retry_limit=self.databricks_retry_limit,
            retry_delay=self.databricks_retry_delay,
            run_page_url=job_url,
            caller=type(self).__name__,
        )

    def cancel_job(self, job_id: int) -> None:
        self.hook.cancel_run(job_id)

    def job_outcome(self, job_id: int, state: Mapping[str, Any]) -> JobOutcome:
        return self._outcome(job_id, self.hook.get_run_state(job_id), errors=[])

    def outcome_from_event(self, event: Mapping[str, Any], state: Mapping[str, Any]) -> JobOutcome:
        from airflow.providers.databricks.hooks.databricks import RunState

        if "run_state" not in event:
            raise StepRunError(f"Step '{self.step_name}': the Databricks trigger sent no run state ({event!r}).")
        return self._outcome(state["job_id"], RunState.from_json(event["run_state"]), list(event.get("errors") or []))

    def _outcome(self, run_id: int, run_state: Any, errors: list[Any]) -> JobOutcome:
        """The run's end, with what ``runs/get-output`` says of its task (exit value, logs, error)."""
        output = self._run_output(self.hook, run_id)
        result = (output.get("notebook_output") or {}).get("result")
        detail = "; ".join(str(x) for x in (output.get("error"), *errors) if x)
        summary = (
            f"ended {run_state.life_cycle_state}/{run_state.result_state}: "
            f"{run_state.state_message or '(no state message)'}" + (f". {detail}" if detail else "")
        )
        lines = [
            f"Final state: {run_state}",
            *([f"Notebook exit value: {result}"] if result is not None else []),
            *([f"Task errors: {errors}"] if errors else []),
            *([output["logs"]] if output.get("logs") else []),
            *([f"Error: {output['error']}"] if output.get("error") else []),
            *([output["error_trace"]] if output.get("error_trace") else []),
        ]
        return JobOutcome(
            succeeded=run_state.result_state == _TERMINAL_OK,
            summary=summary,
            log_lines=lines,
            xcom={XCOM_NOTEBOOK_RESULT_KEY: result} if result is not None else {},
        )

    def _reattach(self, hook: Any, state_store: Any) -> int | None:
        """The run an earlier try of this task submitted, if it is still running (a worker died under it)."""
        if state_store is None:
            return None
        earlier = state_store.get(RUN_ID_STATE_KEY)
        if not earlier:
            return None
        state = hook.get_run_state(int(earlier))
        if state.is_terminal:
            self.log.info("Databricks run %s of an earlier try has ended (%s); submitting a new run.", earlier, state)
            return None
        self.log.info("Re-attaching to Databricks run %s, submitted by an earlier try of this task.", earlier)
        return int(earlier)

    def _submit(self, run: FreshRun, hook: Any, locations: Mapping[str, str]) -> int:
        ti = run.context["ti"]
        script_directory = None
        if self.task_kind == "python_script_name":
            script_directory = self._upload_snapshot(hook, run)
        contract = {**run.parameter_env, **{data_env_name(p): uri for p, uri in locations.items()}}
        widgets, args = self._job_inputs(contract, locations, self._run_context(ti, script_directory))
        if self.task_kind == "notebook":
            body: dict[str, Any] = {"notebook_task": {"notebook_path": self.task_target, "base_parameters": widgets}}
        elif self.task_kind == "jar":
            body = {"spark_jar_task": {"main_class_name": self.task_target, "parameters": args}}
        else:
            python_file = f"{script_directory}/{self.task_target}" if script_directory else self.task_target
            body = {"spark_python_task": {"python_file": python_file, "parameters": args}}
        cluster = {k: v for k, v in self.cluster.items() if k != "permit_cluster_restart"}
        task = {"task_key": re.sub(r"[^\w-]", "_", self.task_id)[:100], **cluster, **body}
        if self.libraries:
            task["libraries"] = self.libraries
        payload: dict[str, Any] = {
            "run_name": self.run_name or self.step_name,
            "tasks": [task],
            # Same try, same token: Databricks returns the existing run instead of starting a second one.
            "idempotency_token": self._idempotency_token(ti),
        }
        if self.timeout_seconds is not None:
            payload["timeout_seconds"] = int(self.timeout_seconds)
        run_id = int(hook.submit_run(payload))
        self.log.info("Submitted Databricks run %s for step '%s'.", run_id, self.step_name)
        return run_id

    @staticmethod
    def _idempotency_token(ti: Any) -> str:
        key = f"{ti.dag_id}\n{ti.run_id}\n{ti.task_id}\n{getattr(ti, 'map_index', -1)}\n{ti.try_number}"
        return "aml-" + hashlib.sha256(key.encode()).hexdigest()[:60]

    def _upload_snapshot(self, hook: Any, run: FreshRun) -> str:
        """Put the source snapshot on DBFS, once per snapshot (its folder is named by its content)."""
        folder = f"{DBFS_SNAPSHOT_ROOT}/{run.snapshot_id}"
        marker = f"{folder}/.aml-complete"
        try:
            hook._do_api_call(("GET", "2.0/dbfs/get-status"), {"path": marker})
            self.log.info("Source snapshot %s is already on DBFS at %s", run.snapshot_id, folder)
            return folder
        except AirflowException as exc:  # the hook reports a 404 this way; anything else is a real error
            if "RESOURCE_DOES_NOT_EXIST" not in str(exc):
                raise
        self.prepare_workdir(run.script_dir, run.work_dir, store=run.store, snapshot_id=run.snapshot_id)
        files = sorted(p for p in run.script_dir.rglob("*") if p.is_file())
        for path in files:
            self._dbfs_put(hook, f"{folder}/{path.relative_to(run.script_dir).as_posix()}", path.read_bytes())
        self._dbfs_put(hook, marker, b"")
        self.log.info("Uploaded source snapshot %s (%d files) to %s", run.snapshot_id, len(files), folder)
        return folder

    @staticmethod
    def _dbfs_put(hook: Any, path: str, data: bytes) -> None:
        if len(data) <= _DBFS_BLOCK:
            body = {"path": path, "contents": base64.b64encode(data).decode(), "overwrite": True}
            hook._do_api_call(("POST", "2.0/dbfs/put"), body)
            return
        # DBFS takes at most 1 MB per call: stream larger files in blocks.
        handle = hook._do_api_call(("POST", "2.0/dbfs/create"), {"path": path, "overwrite": True})["handle"]
        for start in range(0, len(data), _DBFS_BLOCK):
            block = base64.b64encode(data[start : start + _DBFS_BLOCK]).decode()
            hook._do_api_call(("POST", "2.0/dbfs/add-block"), {"handle": handle, "data": block})
        hook._do_api_call(("POST", "2.0/dbfs/close"), {"handle": handle})

    def _run_output(self, hook: Any, run_id: int) -> dict[str, Any]:
        """``runs/get-output`` of the run's task (where notebook results and logs are)."""
        run = hook.get_run(run_id)
        tasks = run.get("tasks") or []
        task_run_id = tasks[0]["run_id"] if tasks else run_id
        return hook.get_run_output(task_run_id)
