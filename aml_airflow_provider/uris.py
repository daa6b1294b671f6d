"""``azureml://datastores/<name>/paths/<path>`` URIs: how data locations travel in XCom and params."""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import quote, unquote

from aml_airflow_provider._names import check_datastore_name, normalize_datastore_path
from aml_airflow_provider.exceptions import DataPathError

_PREFIX = "azureml://datastores/"


@dataclass(frozen=True)
class DatastoreUri:
    """A location on a named datastore.

    :param datastore: datastore name
    :param path: normalised path inside the datastore ('' is the root)
    """

    datastore: str
    path: str

    def __str__(self) -> str:
        return f"{_PREFIX}{self.datastore}/paths/{quote(self.path, safe='/')}"

    @classmethod
    def parse(cls, uri: object) -> DatastoreUri:
        """Parse a URI string, raising :class:`DataPathError` with the URI in the message."""
        if not isinstance(uri, str) or not uri.startswith(_PREFIX):
            raise DataPathError(f"Invalid data URI {uri!r}: expected 'azureml://datastores/<name>/paths/<path>'.")
        rest = uri[len(_PREFIX) :]
        name, sep, path = rest.partition("/paths/")
        if not sep:
            if rest.endswith("/paths"):
                name, path = rest[: -len("/paths")], ""
            else:
                raise DataPathError(f"Invalid data URI {uri!r}: expected 'azureml://datastores/<name>/paths/<path>'.")
        check_datastore_name(name)
        return cls(name, normalize_datastore_path(unquote(path)))


def format_uri(datastore: str, path: str) -> str:
    return str(DatastoreUri(datastore, normalize_datastore_path(path)))
