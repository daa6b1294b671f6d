"""The one place that maps a step kind to the operator that runs it."""

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING

from aml_airflow_provider.exceptions import UserErrorException

if TYPE_CHECKING:
    from aml_airflow_provider.operators.base import AmlStepOperator

# Dotted paths, imported on first use, so a DAG only imports the operators it uses.
_OPERATORS: dict[str, str] = {
    "PythonScriptStep": "aml_airflow_provider.operators.python_script_step.PythonScriptStepOperator",
    "DatabricksStep": "aml_airflow_provider.operators.databricks_step.DatabricksStepOperator",
    "AdlaStep": "aml_airflow_provider.operators.adla_step.AdlaStepOperator",
    "DataTransferStep": "aml_airflow_provider.operators.data_transfer.DataTransferOperator",
}


def operator_for(kind: str) -> type[AmlStepOperator]:
    """The operator class of a step kind."""
    try:
        path = _OPERATORS[kind]
    except KeyError:
        raise UserErrorException(
            f"No operator for step kind {kind!r} (known kinds: {', '.join(sorted(_OPERATORS))})."
        ) from None
    module, _, name = path.rpartition(".")
    return getattr(import_module(module), name)
