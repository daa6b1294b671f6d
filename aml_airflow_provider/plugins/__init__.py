"""The Airflow plugin: published-pipeline endpoints and the Pipelines page, served by the API server."""

from __future__ import annotations

from airflow.plugins_manager import AirflowPlugin

from aml_airflow_provider.plugins.api import app

#: Where the plugin's routes live on the API server.
URL_PREFIX = "/aml"


class AmlPipelinesPlugin(AirflowPlugin):
    """Registers the ``/aml`` FastAPI app and the *Pipelines* page in the Airflow UI."""

    name = "aml_pipelines"
    fastapi_apps = [{"app": app, "url_prefix": URL_PREFIX, "name": "Azure ML pipelines"}]
    external_views = [
        {"name": "Pipelines", "href": f"{URL_PREFIX}/ui/", "destination": "nav", "url_route": "aml-pipelines"}
    ]
