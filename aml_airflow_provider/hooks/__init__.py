"""Hooks of aml_airflow_provider."""
