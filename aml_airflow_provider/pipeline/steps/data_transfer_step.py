"""``DataTransferStep``: copy data between datastores and SQL databases, on the Airflow worker."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from aml_airflow_provider.core.compute import ComputeTarget, DataFactoryCompute
from aml_airflow_provider.data.data_reference import DataReference
from aml_airflow_provider.data.sql_data_reference import SqlDataReference
from aml_airflow_provider.exceptions import StepDefinitionError
from aml_airflow_provider.pipeline.core.builder import InputPortBinding, PipelineData, PipelineStep, StepContext
from aml_airflow_provider.pipeline.core.graph import PipelineParameter, PortDataReference

if TYPE_CHECKING:
    from aml_airflow_provider.spec import StepSpec

#: v1's name of the output that stands for the destination (consume it to run after the copy).
TRANSFER_OUTPUT = "_data_transfer_output"
REFERENCE_TYPES = ("file", "directory")


def _reference_type(value: object, what: str, where: str) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str) or value.lower() not in REFERENCE_TYPES:
        raise StepDefinitionError(f"{where}: {what} must be 'file' or 'directory', not {value!r}.")
    return value.lower()


def _sql_spec(ref: SqlDataReference) -> dict[str, Any]:
    return {
        "datastore": ref.datastore.name,
        "query": ref.sql_query,
        "table": ref.sql_table,
        "procedure": ref.sql_stored_procedure,
        "params": [str(p) for p in ref.sql_stored_procedure_params],
    }


class DataTransferStep(PipelineStep):
    """Copy a file, a folder or a SQL result between datastores, as SDK v1 did with Data Factory.

    The copy runs on the Airflow worker with the storage SDKs (blob to blob is a server-side copy);
    ``compute_target`` is accepted for compatibility. Consume :meth:`get_output` downstream to run after
    the copy: it is the destination.

    :param name: the step's name
    :param source_data_reference: a ``DataReference``, ``PipelineData``, ``PortDataReference``,
        ``InputPortBinding``, DataPath parameter or ``SqlDataReference`` (query, table or stored procedure)
    :param destination_data_reference: a ``DataReference`` (its ``overwrite`` flag decides whether
        existing files are replaced), DataPath parameter, ``PipelineData``, or ``SqlDataReference`` with
        ``sql_table`` (rows are appended, as v1)
    :param compute_target: a ``DataFactoryCompute`` or its name (informational: the worker copies)
    :param source_reference_type: ``file`` or ``directory`` (default: what the source is)
    :param destination_reference_type: ``file`` or ``directory`` (default: what the destination is, else
        the source's type)
    :param allow_reuse: reuse an earlier copy when the source's content and the step are unchanged
    """

    kind = "DataTransferStep"
    kind_version = 1

    def __init__(
        self,
        name: str,
        source_data_reference: Any = None,
        destination_data_reference: Any = None,
        compute_target: Any = None,
        source_reference_type: str | None = None,
        destination_reference_type: str | None = None,
        allow_reuse: bool = True,
    ) -> None:
        where = f"DataTransferStep '{name}'"
        if source_data_reference is None or destination_data_reference is None:
            raise StepDefinitionError(f"{where}: give source_data_reference and destination_data_reference.")
        self.source_reference_type = _reference_type(source_reference_type, "source_reference_type", where)
        self.destination_reference_type = _reference_type(
            destination_reference_type, "destination_reference_type", where
        )
        if not isinstance(allow_reuse, bool):
            raise StepDefinitionError(f"{where}: allow_reuse must be True or False.")
        if isinstance(compute_target, ComputeTarget) and not isinstance(compute_target, DataFactoryCompute):
            raise StepDefinitionError(
                f"{where}: compute_target must be a DataFactoryCompute or its name (the copy runs on the Airflow "
                f"worker either way), not a {type(compute_target).__name__}."
            )
        self.compute_name = compute_target.name if isinstance(compute_target, ComputeTarget) else compute_target
        source = source_data_reference
        self.source_sql = _sql_spec(source) if isinstance(source, SqlDataReference) else None
        if not self.source_sql and not isinstance(
            source, DataReference | PipelineData | PortDataReference | InputPortBinding | PipelineParameter | tuple
        ):
            raise StepDefinitionError(
                f"{where}: source_data_reference cannot be a {type(source).__name__}; give a DataReference, "
                "PipelineData, PortDataReference, DataPath parameter or SqlDataReference."
            )
        dest = destination_data_reference
        if isinstance(dest, InputPortBinding) and isinstance(dest.bind_object, DataReference):
            dest = dest.bind_object
        self.destination: dict[str, Any] | None = None
        output: PipelineData
        if isinstance(dest, SqlDataReference):
            if not dest.sql_table:
                raise StepDefinitionError(
                    f"{where}: a SQL destination must name a table (sql_table): rows are appended."
                )
            if self.source_sql:
                raise StepDefinitionError(f"{where}: copy between two SQL datastores through a file datastore.")
            self.destination = {"sql": _sql_spec(dest)}
            output = PipelineData(TRANSFER_OUTPUT, datastore=dest.datastore)
        elif isinstance(dest, DataReference):
            self.destination = {"uri": dest.uri, "overwrite": dest.overwrite}
            output = PipelineData(TRANSFER_OUTPUT, datastore=dest.datastore)
        elif isinstance(dest, PipelineParameter | tuple):
            param = dest[0] if isinstance(dest, tuple) else dest
            if not isinstance(param, PipelineParameter) or param.type != "datapath":
                raise StepDefinitionError(f"{where}: a parameter destination must be a DataPath PipelineParameter.")
            self._destination_param = param
            self.destination = {"parameter": param.name, "overwrite": True}
            output = PipelineData(TRANSFER_OUTPUT, datastore=param.default_value.datastore)
        elif isinstance(dest, PipelineData):
            output = dest  # a fresh folder of each run: the step's own output
        else:
            raise StepDefinitionError(
                f"{where}: destination_data_reference cannot be a {type(dest).__name__}; give a DataReference, "
                "DataPath parameter, PipelineData or SqlDataReference with sql_table."
            )
        self.allow_reuse = allow_reuse
        self._sql_datastores = [r.datastore for r in (source, dest) if isinstance(r, SqlDataReference)]
        inputs = [] if self.source_sql else [source]
        super().__init__(name, inputs, [output])
        if self.destination and "parameter" in self.destination:
            self._use_parameter(self._destination_param)

    def get_output(self) -> PipelineData:
        """The destination, as data later steps consume (so they run after the copy)."""
        return self._outputs[0]

    def _datastores(self) -> list[Any]:
        # The pipeline checks every datastore belongs to its workspace, SQL ones included.
        return super()._datastores() + self._sql_datastores

    def _to_spec(self, ctx: StepContext) -> StepSpec:
        config = {
            "source_sql": self.source_sql,
            "destination": self.destination,
            "source_reference_type": self.source_reference_type,
            "destination_reference_type": self.destination_reference_type,
            "compute_target": self.compute_name,
        }
        return self._base_spec(ctx, config=config, compute=None, allow_reuse=self.allow_reuse, version=None)
