"""``DataTransferOperator``: a DataTransferStep's verified copy, run on the Airflow worker."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from aml_airflow_provider.exceptions import StepRunError, UserErrorException
from aml_airflow_provider.operators.base import AmlStepOperator, FreshRun
from aml_airflow_provider.storage.base import local_file_for
from aml_airflow_provider.uris import DatastoreUri

if TYPE_CHECKING:
    from airflow.sdk import Context

    from aml_airflow_provider.storage.base import DatastoreBackend

#: File formats a SQL result is written in (by the destination file's extension) and read back from.
_PARQUET_SUFFIXES = (".parquet", ".pq")


def _format_of(path: str) -> str:
    return "parquet" if path.lower().endswith(_PARQUET_SUFFIXES) else "csv"


class DataTransferOperator(AmlStepOperator):
    """Copy between datastores, or between a datastore and a SQL database, and verify the copy.

    blob to blob is a server-side copy; other pairs go through the worker in parallel chunks; a SQL
    source is streamed to CSV or Parquet (by the destination's extension); files are appended to a SQL
    table in one transaction, once per step run even when the task is retried. Every copied file is
    checked (size, and MD5 where the store keeps one). The destination's URI is pushed under the output
    name, so later steps read it.

    :param source_sql: a SQL source: ``datastore`` and one of ``query``, ``table``, ``procedure`` (+ ``params``)
    :param destination: ``{"uri": ..., "overwrite": bool}``, ``{"parameter": name}`` or ``{"sql": {...}}``;
        ``None``: the step's output port (a fresh folder of the run)
    :param source_reference_type: ``file`` or ``directory`` (default: what the source is)
    :param destination_reference_type: ``file`` or ``directory`` (default: what the destination is, else the
        source's type)
    :param data_factory: the v1 compute name, recorded only (the worker copies)
    :param kwargs: see :class:`~aml_airflow_provider.operators.base.AmlStepOperator`
    """

    template_fields: Sequence[str] = (*AmlStepOperator.template_fields, "source_sql", "destination")
    template_fields_renderers = {
        **AmlStepOperator.template_fields_renderers,
        "source_sql": "json",
        "destination": "json",
    }
    ui_color = "#d9f2d9"
    kind = "DataTransferStep"
    kind_version = 1

    def __init__(
        self,
        *,
        source_sql: Mapping[str, Any] | None = None,
        destination: Mapping[str, Any] | None = None,
        source_reference_type: str | None = None,
        destination_reference_type: str | None = None,
        data_factory: str | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.source_sql = dict(source_sql) if source_sql else None
        self.destination = dict(destination) if destination else None
        self.source_reference_type = source_reference_type
        self.destination_reference_type = destination_reference_type
        self.data_factory = data_factory

    @classmethod
    def kwargs_from_config(cls, step: Any) -> dict[str, Any]:
        config = step.config
        return {
            "source_sql": config.get("source_sql"),
            "destination": config.get("destination"),
            "source_reference_type": config.get("source_reference_type"),
            "destination_reference_type": config.get("destination_reference_type"),
            "data_factory": config.get("compute_target"),
        }

    def sql(self, datastore: str) -> Any:
        from aml_airflow_provider.hooks.datastore import AmlDatastoreHook

        return AmlDatastoreHook.for_datastore(self.workspace, datastore).sql

    def output_file_count(self, location: DatastoreUri) -> int:
        # A SQL table destination holds rows, not files (0: nothing to check before reusing).
        if self.destination and "sql" in self.destination:
            return 0
        return super().output_file_count(location)

    # -- identity ---------------------------------------------------------------------------------
    def fingerprint_components(self, parameter_env: dict[str, str]) -> dict[str, Any]:
        components: dict[str, Any] = {
            "destination": self.destination,
            "types": [self.source_reference_type, self.destination_reference_type],
        }
        if self.source_sql:
            # A SQL source counts by its content, as a file source does (the statement, its rows).
            source = self.source_sql
            components["source_sql"] = self.sql(source["datastore"]).identity(
                query=source.get("query"),
                table=source.get("table"),
                procedure=source.get("procedure"),
                params=source.get("params") or (),
            )
        return components

    # -- the copy ---------------------------------------------------------------------------------
    def run_step(self, context: Context, **kwargs: Any) -> None:
        raise NotImplementedError("DataTransferOperator copies in run_fresh().")

    def run_fresh(self, run: FreshRun) -> dict[str, str]:
        ti = run.context["ti"]
        (out,) = run.outputs
        lines: list[str] = []

        def report(line: str) -> None:
            self.log.info("%s", line)
            lines.append(line)

        status = "Failed"
        try:
            dest_uri, overwrite = self._destination(run, out)
            if self.destination and "sql" in self.destination:
                self._into_sql(run, report)
            elif self.source_sql:
                self._from_sql(run, dest_uri, overwrite, report)
            else:
                self._between_stores(run, dest_uri, overwrite, report)
            status = "Finished"
        finally:
            driver_log = run.work_dir / "driver_log.txt"
            driver_log.write_text("\n".join(lines) + "\n", encoding="utf-8")
            self._keep_step_run(
                run.store,
                run.work_dir / "tracking",
                run.script_dir,
                driver_log,
                run.work_dir / "step-run",
                run.folder,
                {"status": status, "snapshot": None, "data_factory": self.data_factory},
            )
        uris = {out.name: str(dest_uri)}
        self._record(run.index, run.fingerprint, uris, ti, run.step_run_uri, None)
        return uris

    def _destination(self, run: FreshRun, out: Any) -> tuple[DatastoreUri, bool]:
        """Where the copy goes, and whether existing files there are replaced."""
        dest = self.destination or {}
        if "uri" in dest:
            return DatastoreUri.parse(dest["uri"]), bool(dest.get("overwrite"))
        if "parameter" in dest:
            value = run.context["params"].get(dest["parameter"])
            if not value:
                raise UserErrorException(f"Task '{self.task_id}': DAG param '{dest['parameter']}' has no value.")
            return DatastoreUri.parse(value), True
        if "sql" in dest:
            return DatastoreUri(dest["sql"]["datastore"], dest["sql"]["table"]), False
        # The step's own output: a fresh folder of this run; leftovers of a dead attempt go first.
        location = run.output_location(out)
        self.backend(location.datastore).delete_prefix(location.path)
        return location, True

    def _source_type(self, backend: DatastoreBackend, path: str) -> str:
        if self.source_reference_type:
            return self.source_reference_type
        files = backend.list_files(path)
        return "file" if len(files) == 1 and files[0].path == path else "directory"

    def _destination_type(self, backend: DatastoreBackend, path: str, source_type: str) -> str:
        if self.destination_reference_type:
            return self.destination_reference_type
        files = backend.list_files(path)
        if files:
            return "file" if len(files) == 1 and files[0].path == path else "directory"
        return source_type

    def _between_stores(self, run: FreshRun, dest: DatastoreUri, overwrite: bool, report) -> None:
        from aml_airflow_provider.storage.copy import copy_files

        (port,) = run.inputs
        source = run.locations[port.name]
        src_backend, dst_backend = self.backend(source.datastore), self.backend(dest.datastore)
        source_type = self._source_type(src_backend, source.path)
        dest_type = self._destination_type(dst_backend, dest.path, source_type)
        if source_type == "directory" and dest_type == "file":
            raise StepRunError(f"Step '{self.step_name}': cannot copy the folder {source} into the file {dest}.")
        dest_path = dest.path
        if source_type == "file" and dest_type == "directory":
            dest_path = f"{dest.path}/{source.path.rsplit('/', 1)[-1]}".lstrip("/")
        report(f"Copying {source_type} {source} to {dest_type} {dest} (overwrite={overwrite})")
        stats = copy_files(
            src_backend, source.path, dst_backend, dest_path,
            directory=source_type == "directory", overwrite=overwrite, report=report,
        )  # fmt: skip
        report(
            f"Copied {stats.files} files, {stats.bytes} bytes in {stats.seconds:.1f} s "
            f"({stats.bytes_per_second / 1e6:.1f} MB/s){', server-side' if stats.server_side else ''}"
            + (f"; kept {stats.skipped} existing files (overwrite=False)" if stats.skipped else "")
        )

    def _from_sql(self, run: FreshRun, dest: DatastoreUri, overwrite: bool, report) -> None:
        source = self.source_sql or {}
        backend = self.backend(dest.datastore)
        dest_type = self.destination_reference_type or ("file" if "." in dest.path.rsplit("/", 1)[-1] else "directory")
        name = source.get("table") or "result"
        target = dest.path if dest_type == "file" else f"{dest.path}/{name}.csv".lstrip("/")
        local = run.work_dir / "export" / Path(target).name
        local.parent.mkdir(parents=True, exist_ok=True)
        store = self.sql(source["datastore"])
        report(f"Exporting from {store.describe()} to {dest.datastore}:{target}")
        stats = store.export(
            local,
            query=source.get("query"),
            table=source.get("table"),
            procedure=source.get("procedure"),
            params=source.get("params") or (),
            fmt=_format_of(target),
            report=report,
        )
        uploaded = backend.upload_many([(local, target)], overwrite=overwrite, report=report)
        report(
            f"Exported {stats.rows} rows ({stats.bytes} bytes, columns {', '.join(stats.columns)}); "
            + ("kept the existing file (overwrite=False)" if uploaded.skipped else f"wrote {dest.datastore}:{target}")
        )

    def _into_sql(self, run: FreshRun, report) -> None:
        destination = (self.destination or {})["sql"]
        (port,) = run.inputs
        source = run.locations[port.name]
        backend = self.backend(source.datastore)
        files = [f for f in backend.list_files(source.path) if not f.path.rsplit("/", 1)[-1].startswith(".")]
        if not files:
            raise StepRunError(f"Step '{self.step_name}': the source {source} holds no files to load.")
        local_dir = run.work_dir / "load"
        pairs = [(f.path, local_file_for(local_dir, f.path, source=str(source))) for f in files]
        backend.download_many(pairs, overwrite=True, report=report)
        store = self.sql(destination["datastore"])
        ti = run.context["ti"]
        # One id per step run and source content: a retried task finds its rows already committed.
        transfer_id = f"{ti.dag_id}/{ti.run_id}/{ti.task_id}/{run.fingerprint.id[:16]}"[:128]
        stats = store.append(
            [p for _, p in pairs],
            destination["table"],
            fmt=_format_of(files[0].path),
            transfer_id=transfer_id,
            report=report,
        )
        if stats.already_done:
            report(f"Rows of transfer {transfer_id} were already appended to {destination['table']} (a retry).")
        else:
            report(f"Appended {stats.rows} rows from {stats.files} files to {destination['table']} in one transaction.")
