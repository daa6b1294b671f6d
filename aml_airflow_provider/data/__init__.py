"""Data references (SDK v1 ``azureml.data``)."""

from aml_airflow_provider.data.data_reference import DataReference
from aml_airflow_provider.data.datapath import DataPath, DataPathComputeBinding
from aml_airflow_provider.data.sql_data_reference import SqlDataReference

__all__ = ["DataPath", "DataPathComputeBinding", "DataReference", "SqlDataReference"]
