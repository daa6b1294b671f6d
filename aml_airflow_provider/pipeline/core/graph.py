"""``PipelineParameter`` and ``PortDataReference`` (SDK v1 keeps them in ``pipeline.core.graph``)."""

from __future__ import annotations

import math
import os
from typing import TYPE_CHECKING, Any

from aml_airflow_provider._names import (
    check_parameter_name,
    check_port_name,
    normalize_datastore_path,
    parameter_env_name,
)
from aml_airflow_provider.data.datapath import DataPath
from aml_airflow_provider.exceptions import PipelineParameterError
from aml_airflow_provider.spec import ParameterSpec
from aml_airflow_provider.uris import format_uri

if TYPE_CHECKING:
    from aml_airflow_provider.core.datastore import Datastore
    from aml_airflow_provider.pipeline.core.builder import InputPortBinding

#: The longest string value a parameter may have (values travel in DAG run conf and env vars).
MAX_PARAMETER_STRING = 32_768
#: The largest integer a parameter may hold: JSON clients and Airflow's trigger form (JavaScript
#: numbers) keep integers exact only up to 2**53 - 1.
MAX_PARAMETER_INT = 2**53 - 1


def parameter_type_of(value: object) -> str | None:
    """The spec type tag of a value, or ``None`` if a parameter cannot hold it."""
    if isinstance(value, bool):  # before int: bool is an int
        return "bool"
    if isinstance(value, int):
        return "int"
    if isinstance(value, float):
        return "float"
    if isinstance(value, str):
        return "string"
    if isinstance(value, DataPath):
        return "datapath"
    return None


def check_string_value(name: str, value: str) -> None:
    if "\n" in value or "\r" in value:
        raise PipelineParameterError(f"Pipeline parameter '{name}': multi-line values are not allowed.")
    if "\x00" in value:
        raise PipelineParameterError(f"Pipeline parameter '{name}': the value contains a NUL byte.")
    if len(value) > MAX_PARAMETER_STRING:
        raise PipelineParameterError(
            f"Pipeline parameter '{name}': the value is {len(value)} characters long "
            f"(at most {MAX_PARAMETER_STRING}); pass large data through a datastore instead."
        )


def check_number_value(name: str, value: int | float) -> None:
    """Raise :class:`PipelineParameterError` for a number a run cannot carry exactly (NaN, infinity, huge ints)."""
    if isinstance(value, bool):
        return
    if isinstance(value, float) and not math.isfinite(value):
        raise PipelineParameterError(
            f"Pipeline parameter '{name}': {value!r} is not a finite number (JSON and the trigger form cannot hold it)."
        )
    if isinstance(value, int) and abs(value) > MAX_PARAMETER_INT:
        raise PipelineParameterError(
            f"Pipeline parameter '{name}': the integer {str(value)[:30]}{'...' if len(str(value)) > 30 else ''} is "
            f"outside +/-{MAX_PARAMETER_INT} (2**53 - 1), the range JSON clients and Airflow's trigger form keep "
            "exact; pass it as a string parameter instead."
        )


class PipelineParameter:
    """A value chosen when a run is submitted or triggered.

    :param name: parameter name, unique in the pipeline
    :param default_value: an ``int``, ``float``, ``bool``, ``str`` or ``DataPath``; its type is the
        parameter's type
    :param description: shown in the Airflow trigger form (this package's addition)
    """

    def __init__(self, name: str, default_value: Any, description: str | None = None) -> None:
        self.name = check_parameter_name(name)
        type_ = parameter_type_of(default_value)
        if type_ is None:
            raise PipelineParameterError(
                f"Pipeline parameter '{name}': default value of type {type(default_value).__name__} is not "
                "supported; use int, float, bool, str or DataPath."
            )
        if type_ == "string":
            check_string_value(name, default_value)
        elif type_ in ("int", "float"):
            check_number_value(name, default_value)
        self.default_value = default_value
        self.type = type_
        self.description = description

    @property
    def env_name(self) -> str:
        return parameter_env_name(self.name)

    def _spec(self) -> ParameterSpec:
        default = self.default_value.uri if isinstance(self.default_value, DataPath) else self.default_value
        return ParameterSpec(self.name, self.type, default, self.description)

    def _key(self) -> tuple[str, str, Any]:
        return self.name, self.type, self._spec().default

    def __str__(self) -> str:
        return "$" + self.env_name

    def __repr__(self) -> str:
        return f"PipelineParameter(name={self.name!r}, default_value={self.default_value!r})"


class PortDataReference:
    """The data a step run produced on one output port.

    :param datastore: the datastore holding it
    :param path_on_datastore: where it is
    :param data_reference_name: the port's name
    """

    def __init__(self, datastore: Datastore, path_on_datastore: str, data_reference_name: str) -> None:
        self.datastore = datastore
        self.path_on_datastore = normalize_datastore_path(path_on_datastore)
        self.data_reference_name = check_port_name(data_reference_name)

    @property
    def name(self) -> str:
        return self.data_reference_name

    @property
    def datastore_name(self) -> str:
        return self.datastore.name

    @property
    def uri(self) -> str:
        return format_uri(self.datastore.name, self.path_on_datastore)

    @property
    def data_reference(self):
        from aml_airflow_provider.data.data_reference import DataReference

        return DataReference(self.datastore, self.data_reference_name, self.path_on_datastore)

    def download(self, local_path: str | os.PathLike[str], overwrite: bool = False, show_progress: bool = True) -> int:
        """Download the data into ``local_path`` (under its full datastore path, as v1); return the file count."""
        return self.datastore.download(
            local_path, prefix=self.path_on_datastore, overwrite=overwrite, show_progress=show_progress
        )

    def as_input(self, input_name: str | None = None) -> InputPortBinding:
        return self.as_mount(input_name)

    def as_mount(self, input_name: str | None = None) -> InputPortBinding:
        from aml_airflow_provider.pipeline.core.builder import InputPortBinding

        return InputPortBinding(self, bind_mode="mount", input_name=input_name)

    def as_download(
        self, input_name: str | None = None, path_on_compute: str | None = None, overwrite: bool | None = None
    ) -> InputPortBinding:
        from aml_airflow_provider.pipeline.core.builder import InputPortBinding

        return InputPortBinding(
            self,
            bind_mode="download",
            path_on_compute=path_on_compute,
            overwrite=overwrite,
            input_name=input_name,
        )

    def __str__(self) -> str:
        return f"$AZUREML_DATAREFERENCE_{self.data_reference_name}"

    def __repr__(self) -> str:
        return f"PortDataReference(datastore={self.datastore.name!r}, path_on_datastore={self.path_on_datastore!r})"
