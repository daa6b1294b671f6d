"""Pipelines (SDK v1 ``azureml.pipeline``)."""
