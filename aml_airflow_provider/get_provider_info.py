"""Provider metadata read by Airflow (entry point ``apache_airflow_provider``)."""

from __future__ import annotations

from typing import Any


def get_provider_info() -> dict[str, Any]:
    from aml_airflow_provider import __version__

    string = {"type": ["string", "null"]}
    return {
        "package-name": "aml-airflow-provider",
        "name": "Azure ML SDK v1 pipelines",
        "description": "Run Azure Machine Learning SDK v1 pipelines (PythonScriptStep, datastores, "
        "PipelineData, PipelineParameter) as Airflow DAGs.",
        "versions": [__version__],
        "extra-links": [
            "aml_airflow_provider.operators.links.StepOutputsLink",
            "aml_airflow_provider.operators.links.StepLogsLink",
            "aml_airflow_provider.operators.databricks_step.DatabricksRunLink",
            "aml_airflow_provider.operators.adla_step.AdlaJobLink",
        ],
        "triggers": [
            {
                "integration-name": "Azure Data Lake Analytics",
                "python-modules": ["aml_airflow_provider.triggers.adla"],
            }
        ],
        "connection-types": [
            {
                "hook-class-name": "aml_airflow_provider.hooks.workspace.AmlWorkspaceHook",
                "hook-name": "AML workspace",
                "connection-type": "aml_workspace",
                "conn-fields": {
                    "default_datastore": {"label": "Default datastore", "schema": string},
                    "subscription_id": {"label": "Subscription id (informational)", "schema": string},
                    "resource_group": {"label": "Resource group (informational)", "schema": string},
                },
                "ui-field-behaviour": {"hidden-fields": ["host", "schema", "login", "password", "port"]},
            },
            {
                "hook-class-name": "aml_airflow_provider.hooks.datastore.AmlDatastoreHook",
                "hook-name": "AML blob datastore",
                "connection-type": "aml_blob_datastore",
                "conn-fields": {
                    "container_name": {"label": "Container", "schema": string},
                    "account_name": {"label": "Storage account", "schema": string},
                    "account_url": {"label": "Account URL", "schema": string},
                    "credential": {
                        "label": "Credential kind",
                        "description": "connection_string, account_key, sas_token or default_azure_credential; "
                        "the secret itself goes in Password.",
                        "schema": {
                            "type": ["string", "null"],
                            "enum": [
                                "connection_string",
                                "account_key",
                                "sas_token",
                                "default_azure_credential",
                                None,
                            ],
                        },
                    },
                },
                "ui-field-behaviour": {
                    "hidden-fields": ["host", "schema", "login", "port"],
                    "relabeling": {"password": "Account key, SAS token or connection string"},
                },
            },
            {
                "hook-class-name": "aml_airflow_provider.hooks.datastore.AmlSqlDatastoreHook",
                "hook-name": "AML SQL datastore",
                "connection-type": "aml_sql_datastore",
                "conn-fields": {
                    "sql_kind": {
                        "label": "Database kind",
                        "schema": {"type": ["string", "null"], "enum": ["postgresql", "mysql", "sqlserver", None]},
                    },
                    "server_name": {"label": "Server", "schema": string},
                    "port": {"label": "Port", "schema": {"type": ["integer", "null"]}},
                    "database_name": {"label": "Database", "schema": string},
                    "user_id": {"label": "User", "schema": string},
                    "ssl": {"label": "Require TLS", "schema": {"type": ["boolean", "null"]}},
                },
                "ui-field-behaviour": {"hidden-fields": ["host", "schema", "login", "port"]},
            },
            {
                "hook-class-name": "aml_airflow_provider.hooks.compute.AmlComputeHook",
                "hook-name": "AML compute target",
                "connection-type": "aml_compute",
                "conn-fields": {
                    "aml_compute_type": {"label": "Compute type", "schema": string},
                    "databricks_conn_id": {
                        "label": "Databricks connection (for a Databricks compute)",
                        "schema": string,
                    },
                    "local": {"label": "Run on local Spark on the worker", "schema": {"type": ["boolean", "null"]}},
                },
                "ui-field-behaviour": {"hidden-fields": ["host", "schema", "login", "password", "port"]},
            },
            {
                "hook-class-name": "aml_airflow_provider.hooks.adla.AdlaHook",
                "hook-name": "Data Lake Analytics (AML)",
                "connection-type": "aml_adla",
                "conn-fields": {
                    "account_name": {"label": "Account", "schema": string},
                    "endpoint": {"label": "Job service URL", "schema": string},
                    "credential": {
                        "label": "Credential kind",
                        "description": "service_principal (secret in Password), access_token (token in Password) "
                        "or default_azure_credential.",
                        "schema": {
                            "type": ["string", "null"],
                            "enum": ["service_principal", "access_token", "default_azure_credential", None],
                        },
                    },
                    "tenant_id": {"label": "Tenant id", "schema": string},
                    "client_id": {"label": "Client id", "schema": string},
                    "authority": {"label": "Authority host (sovereign clouds)", "schema": string},
                },
                "ui-field-behaviour": {
                    "hidden-fields": ["host", "schema", "login", "port"],
                    "relabeling": {"password": "Client secret or access token"},
                },
            },
            {
                "hook-class-name": "aml_airflow_provider.hooks.datastore.AmlLocalDatastoreHook",
                "hook-name": "AML local-folder datastore",
                "connection-type": "aml_local_datastore",
                "conn-fields": {"root": {"label": "Folder", "schema": string}},
                "ui-field-behaviour": {"hidden-fields": ["host", "schema", "login", "password", "port"]},
            },
        ],
    }
