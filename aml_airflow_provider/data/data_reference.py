"""``DataReference``: existing data on a datastore, and how a step receives it (SDK v1 path)."""

from __future__ import annotations

import hashlib
from typing import TYPE_CHECKING

from aml_airflow_provider._names import check_compute_path, check_port_name, data_env_name, normalize_datastore_path
from aml_airflow_provider.exceptions import UserErrorException
from aml_airflow_provider.uris import format_uri

if TYPE_CHECKING:
    from aml_airflow_provider.core.datastore import Datastore

SUPPORTED_DATAREF_MODES = ("mount", "download", "upload")


def _check_datastore(datastore: object, what: str) -> Datastore:
    from aml_airflow_provider.core.datastore import Datastore

    if not isinstance(datastore, Datastore):
        raise UserErrorException(
            f"{what}: datastore must be a Datastore (for example Datastore(ws, 'workspaceblobstore')), "
            f"not {type(datastore).__name__}."
        )
    return datastore


class DataReference:
    """A location on a datastore and how a step receives it.

    :param datastore: the datastore holding the data
    :param data_reference_name: the input's name: the script sees ``AZUREML_DATAREFERENCE_<name>``.
        Default: the datastore's name for the root, else a name derived from the datastore and path
        (v1 drew a random one, which made every rebuild look like new data)
    :param path_on_datastore: a file or folder path inside the datastore (``None`` or ``/`` is the root)
    :param mode: ``mount`` (default; on a blob datastore the data is downloaded, as there is no FUSE
        here), ``download`` or ``upload`` (the step's ``path_on_compute`` is uploaded after it runs)
    :param path_on_compute: where the data goes, relative to the step's working directory
    :param overwrite: for ``download``/``upload``: replace existing files
    """

    def __init__(
        self,
        datastore: Datastore,
        data_reference_name: str | None = None,
        path_on_datastore: str | None = None,
        mode: str = "mount",
        path_on_compute: str | None = None,
        overwrite: bool = False,
    ) -> None:
        self.datastore = _check_datastore(datastore, f"DataReference {data_reference_name or path_on_datastore!r}")
        self.path_on_datastore = normalize_datastore_path(path_on_datastore)
        if data_reference_name is None:
            if self.path_on_datastore:
                digest = hashlib.sha1(f"{datastore.name}/{self.path_on_datastore}".encode()).hexdigest()[:12]
                data_reference_name = f"dataref_{digest}"
            else:
                data_reference_name = datastore.name
        self.data_reference_name = check_port_name(data_reference_name, "data_reference_name")
        if mode not in SUPPORTED_DATAREF_MODES:
            raise UserErrorException(
                f"DataReference '{self.data_reference_name}': mode {mode!r} is not one of {SUPPORTED_DATAREF_MODES}."
            )
        self.mode = mode
        self.path_on_compute = check_compute_path(
            path_on_compute, f"path_on_compute of DataReference '{self.data_reference_name}'"
        )
        self.overwrite = bool(overwrite)

    @property
    def name(self) -> str:
        return self.data_reference_name

    @property
    def datastore_name(self) -> str:
        return self.datastore.name

    @property
    def uri(self) -> str:
        return format_uri(self.datastore.name, self.path_on_datastore)

    def _clone(self, **changes: object) -> DataReference:
        args = dict(
            datastore=self.datastore,
            data_reference_name=self.data_reference_name,
            path_on_datastore=self.path_on_datastore,
            mode=self.mode,
            path_on_compute=self.path_on_compute,
            overwrite=self.overwrite,
        )
        args.update(changes)
        return DataReference(**args)  # type: ignore[arg-type]

    def as_mount(self) -> DataReference:
        return self._clone(mode="mount")

    def as_download(self, path_on_compute: str | None = None, overwrite: bool = False) -> DataReference:
        # v1 ignored ``overwrite`` here (a bug users hit); it is honoured.
        return self._clone(mode="download", path_on_compute=path_on_compute, overwrite=overwrite)

    def as_upload(self, path_on_compute: str | None = None, overwrite: bool = False) -> DataReference:
        return self._clone(mode="upload", path_on_compute=path_on_compute, overwrite=overwrite)

    def path(self, path: str | None = None, data_reference_name: str | None = None) -> DataReference:
        """A reference to ``path`` under this one."""
        child = normalize_datastore_path("/".join(p for p in (self.path_on_datastore, path or "") if p))
        return DataReference(
            self.datastore, data_reference_name, child, self.mode, self.path_on_compute, self.overwrite
        )

    def __str__(self) -> str:
        return "$" + data_env_name(self.data_reference_name)

    def __repr__(self) -> str:
        return (
            f"DataReference(datastore={self.datastore.name!r}, data_reference_name={self.data_reference_name!r}, "
            f"path_on_datastore={self.path_on_datastore!r}, mode={self.mode!r})"
        )
