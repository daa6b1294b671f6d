"""Checking and converting submitted pipeline-parameter values against a spec.

Used by ``Experiment.submit`` (Python values) and, with ``from_strings=True``, wherever values
arrive as text (v1's REST ``ParameterAssignments``).
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from typing import Any

from aml_airflow_provider._names import check_datastore_name
from aml_airflow_provider.data.datapath import DataPath
from aml_airflow_provider.exceptions import DataPathError, InvalidNameError, PipelineParameterError, UserErrorException
from aml_airflow_provider.pipeline.core.graph import MAX_PARAMETER_INT, check_number_value, check_string_value
from aml_airflow_provider.spec import ParameterSpec, PipelineSpec
from aml_airflow_provider.uris import DatastoreUri, format_uri

_TRUE, _FALSE = {"true", "1", "yes"}, {"false", "0", "no"}
# Plain ASCII numbers only: Python's int()/float() also take "1_000" and non-ASCII digits.
_INT_TEXT = re.compile(r"[+-]?[0-9]+")
_FLOAT_TEXT = re.compile(r"[+-]?([0-9]+(\.[0-9]*)?|\.[0-9]+)([eE][+-]?[0-9]+)?")


def _wrong(param: ParameterSpec, value: Any, expected: str) -> PipelineParameterError:
    shown = repr(value) if len(repr(value)) < 80 else repr(value)[:77] + "..."
    return PipelineParameterError(
        f"Pipeline parameter '{param.name}' is of type {param.type}: "
        f"{shown} ({type(value).__name__}) is not {expected}."
    )


def coerce_value(param: ParameterSpec, value: Any, *, from_strings: bool = False) -> Any:
    """``value`` as the JSON value of ``param``'s type; raise :class:`PipelineParameterError` if it is not one."""
    text = from_strings and isinstance(value, str)
    if param.type == "int":
        if text:
            if not _INT_TEXT.fullmatch(value.strip()):
                raise _wrong(param, value, "an integer")
            if len(value.strip()) > 20:  # out of range anyway; int() refuses more than 4300 digits
                raise _wrong(param, value, f"an integer within +/-{MAX_PARAMETER_INT}")
            value = int(value.strip())
            check_number_value(param.name, value)
            return value
        if isinstance(value, bool) or not isinstance(value, int):
            raise _wrong(param, value, "an integer")
        check_number_value(param.name, value)
        return value
    if param.type == "float":
        if text:
            if not _FLOAT_TEXT.fullmatch(value.strip()):
                raise _wrong(param, value, "a number")
            value = float(value.strip())
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise _wrong(param, value, "a number")
        if isinstance(value, int):
            check_number_value(param.name, value)  # float() of a huge int overflows
        if not math.isfinite(value):
            raise _wrong(param, value, "a finite number")
        return float(value)
    if param.type == "bool":
        if text and value.strip().lower() in _TRUE | _FALSE:
            return value.strip().lower() in _TRUE
        if not isinstance(value, bool):
            raise _wrong(param, value, "true or false")
        return value
    if param.type == "string":
        if not isinstance(value, str):
            raise _wrong(param, value, "a string")
        check_string_value(param.name, value)
        return value
    if param.type == "datapath":
        return _datapath_uri(param, value)
    raise PipelineParameterError(f"Pipeline parameter '{param.name}' has unknown type {param.type!r}.")


def _datapath_uri(param: ParameterSpec, value: Any) -> str:
    try:
        if isinstance(value, DataPath):
            return value.uri
        if isinstance(value, Mapping):
            # v1 REST DataPathAssignments: {"DataStoreName": ..., "RelativePath": ...}
            store = value.get("DataStoreName", value.get("datastore"))
            path = value.get("RelativePath", value.get("path_on_datastore", ""))
            if not isinstance(store, str) or not isinstance(path, str):
                raise _wrong(param, value, 'a {"DataStoreName": ..., "RelativePath": ...} object')
            return format_uri(check_datastore_name(store), path)
        if isinstance(value, str):
            return str(DatastoreUri.parse(value))
    except (DataPathError, InvalidNameError) as exc:
        raise PipelineParameterError(f"Pipeline parameter '{param.name}': {exc}") from None
    raise _wrong(param, value, "a DataPath")


def run_tags(tags: Mapping[str, Any] | None) -> dict[str, str]:
    """A run's tags as text; a NUL byte (which PostgreSQL refuses in a run's conf) is a :class:`UserErrorException`."""
    if tags is None:
        return {}
    if not isinstance(tags, Mapping):
        raise UserErrorException(f"Run tags must be a dict of name -> value, not {type(tags).__name__}.")
    text = {str(k): str(v) for k, v in tags.items()}
    for key, value in text.items():
        if "\x00" in key or "\x00" in value:
            raise UserErrorException(f"Run tag {key!r}: {value!r} contains a NUL byte.")
    return text


def resolve_parameter_values(
    spec: PipelineSpec, values: Mapping[str, Any] | None, *, from_strings: bool = False
) -> dict[str, Any]:
    """Every parameter of ``spec`` with its value for a run: the submitted one (checked), else the default.

    :param spec: the pipeline spec
    :param values: submitted values by parameter name
    :param from_strings: also accept values written as text (``"3"`` for an int)
    """
    params = {p.name: p for p in spec.parameters}
    values = dict(values or {})
    unknown = sorted(set(values) - set(params))
    if unknown:
        known = ", ".join(sorted(params)) or "none"
        raise PipelineParameterError(
            f"Pipeline parameter with name {unknown[0]} does not exist (pipeline parameters: {known})."
        )
    return {
        name: coerce_value(param, values[name], from_strings=from_strings) if name in values else param.default
        for name, param in params.items()
    }
