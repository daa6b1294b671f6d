"""Authentication with an Airflow API server (SDK v1 path: ``azureml.core.authentication``).

v1 clients passed ``auth.get_authentication_header()`` as the headers of their REST calls; here the
header carries an Airflow bearer token (Airflow's ``POST /auth/token``), which the API server and
the published-pipeline endpoints both accept.
"""

from __future__ import annotations

import os
import threading


class AirflowAuthentication:
    """A user of an Airflow deployment.

    :param username: default ``$AML_AIRFLOW_USERNAME``
    :param password: default ``$AML_AIRFLOW_PASSWORD`` (never logged, never written to a config file)
    :param token: a ready bearer token instead (default ``$AML_AIRFLOW_TOKEN``)
    :param airflow_url: the API server (set by the workspace that uses it)
    """

    def __init__(
        self,
        username: str | None = None,
        password: str | None = None,
        token: str | None = None,
        airflow_url: str | None = None,
    ) -> None:
        self.username = username or os.environ.get("AML_AIRFLOW_USERNAME")
        self._password = password or os.environ.get("AML_AIRFLOW_PASSWORD")
        self._token = token or os.environ.get("AML_AIRFLOW_TOKEN")
        self._fixed_token = self._token is not None
        self.airflow_url = airflow_url.rstrip("/") if airflow_url else None
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        return f"AirflowAuthentication(username={self.username!r}, airflow_url={self.airflow_url!r})"

    def get_token(self, refresh: bool = False) -> str:
        """A bearer token (a new one when ``refresh``)."""
        with self._lock:
            if self._token and (self._fixed_token or not refresh):
                return self._token
            if not (self.username and self._password and self.airflow_url):
                from aml_airflow_provider.exceptions import WorkspaceException

                raise WorkspaceException(
                    "No credentials for the Airflow API: pass auth=AirflowAuthentication(username, password) or set "
                    "AML_AIRFLOW_USERNAME/AML_AIRFLOW_PASSWORD (or AML_AIRFLOW_TOKEN)."
                )
            import requests

            response = requests.post(
                f"{self.airflow_url}/auth/token",
                json={"username": self.username, "password": self._password},
                timeout=30,
            )
            if response.status_code >= 400:
                from aml_airflow_provider.exceptions import WorkspaceException

                raise WorkspaceException(
                    f"Airflow at {self.airflow_url} refused to log in user {self.username!r} "
                    f"(HTTP {response.status_code})."
                )
            self._token = response.json()["access_token"]
            return self._token

    def get_authentication_header(self) -> dict[str, str]:
        """``{"Authorization": "Bearer <token>"}``, as v1's ``get_authentication_header()``."""
        return {"Authorization": f"Bearer {self.get_token()}"}


#: v1's interactive login has no meaning without a browser login flow; it reads the same variables.
InteractiveLoginAuthentication = AirflowAuthentication

__all__ = ["AirflowAuthentication", "InteractiveLoginAuthentication"]
