"""Triggers: waits for remote jobs, run in the Airflow triggerer."""
