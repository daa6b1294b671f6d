"""Step operators (SDK v1 step kinds run as Airflow tasks)."""

from __future__ import annotations

from typing import Any

__all__ = ["AmlStepOperator", "PythonScriptStepOperator"]


def __getattr__(name: str) -> Any:
    # Imported lazily: ``aml_airflow_provider.operators`` must be cheap to import at DAG-parse time.
    if name == "PythonScriptStepOperator":
        from aml_airflow_provider.operators.python_script_step import PythonScriptStepOperator

        return PythonScriptStepOperator
    if name == "AmlStepOperator":
        from aml_airflow_provider.operators.base import AmlStepOperator

        return AmlStepOperator
    raise AttributeError(name)
