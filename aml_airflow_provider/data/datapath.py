"""``DataPath`` and ``DataPathComputeBinding``: a datastore path that a pipeline parameter can carry."""

from __future__ import annotations

from typing import TYPE_CHECKING

from aml_airflow_provider._names import check_compute_path, normalize_datastore_path
from aml_airflow_provider.data.data_reference import _check_datastore
from aml_airflow_provider.exceptions import UserErrorException
from aml_airflow_provider.uris import format_uri

if TYPE_CHECKING:
    from aml_airflow_provider.core.datastore import Datastore


class DataPath:
    """A path on a datastore, usable as the default or submitted value of a ``PipelineParameter``.

    :param datastore: the datastore
    :param path_on_datastore: a file or folder inside it
    :param name: an optional display name
    """

    def __init__(
        self,
        datastore: Datastore | None = None,
        path_on_datastore: str | None = None,
        name: str | None = None,
    ):
        self.datastore = _check_datastore(datastore, f"DataPath {path_on_datastore!r}")
        self.path_on_datastore = normalize_datastore_path(path_on_datastore)
        self.name = name

    @property
    def datastore_name(self) -> str:
        return self.datastore.name

    @property
    def uri(self) -> str:
        return format_uri(self.datastore.name, self.path_on_datastore)

    def create_data_reference(self, data_reference_name: str | None = None, datapath_compute_binding=None):
        from aml_airflow_provider.data.data_reference import DataReference

        binding = datapath_compute_binding or DataPathComputeBinding()
        return DataReference(
            self.datastore,
            data_reference_name,
            self.path_on_datastore,
            binding.mode,
            binding.path_on_compute,
            binding.overwrite,
        )

    def __eq__(self, other: object) -> bool:
        return isinstance(other, DataPath) and self.uri == other.uri

    def __hash__(self) -> int:
        return hash(self.uri)

    def __repr__(self) -> str:
        return f"DataPath(datastore={self.datastore.name!r}, path_on_datastore={self.path_on_datastore!r})"


class DataPathComputeBinding:
    """How a ``DataPath`` parameter's data reaches the step.

    :param mode: ``mount`` (default) or ``download``
    :param path_on_compute: where the data goes, relative to the step's working directory
    :param overwrite: replace existing files when downloading
    """

    def __init__(self, mode: str = "mount", path_on_compute: str | None = None, overwrite: bool = False) -> None:
        if mode not in ("mount", "download"):
            raise UserErrorException(f"DataPathComputeBinding mode {mode!r} must be 'mount' or 'download'.")
        self.mode = mode
        self.path_on_compute = check_compute_path(path_on_compute, "path_on_compute of DataPathComputeBinding")
        self.overwrite = bool(overwrite)

    def __repr__(self) -> str:
        return f"DataPathComputeBinding(mode={self.mode!r}, path_on_compute={self.path_on_compute!r})"
