"""SDK v1 path of the blob datastore class."""

from aml_airflow_provider.core.datastore import AzureBlobDatastore, LocalDatastore

__all__ = ["AzureBlobDatastore", "LocalDatastore"]
