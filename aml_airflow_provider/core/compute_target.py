"""SDK v1 path of ``ComputeTargetException``."""

from aml_airflow_provider.exceptions import ComputeTargetException

__all__ = ["ComputeTargetException"]
