"""The hook on the Data Lake Analytics job REST API (api-version 2016-11-01): submit, get, cancel."""

from __future__ import annotations

import random
import time
from functools import cached_property
from typing import Any
from urllib.parse import quote

import requests
from airflow.sdk import BaseHook

from aml_airflow_provider._secrets import redact
from aml_airflow_provider.exceptions import RemoteServiceError

API_VERSION = "2016-11-01"
#: The token audience of Data Lake Analytics (its resource id, with azure-identity's ``/.default``).
SCOPE = "https://datalake.azure.net//.default"
#: Refresh a token this long before it expires.
_REFRESH_MARGIN_SECONDS = 300
_MAX_BACKOFF_SECONDS = 60.0


class AdlaHook(BaseHook):
    """Talk to a Data Lake Analytics account's job service.

    The connection (type ``aml_adla``, written by ``ComputeTarget.attach``) holds the endpoint and the
    credential kind in *extra* and the secret (a service principal's client secret, or a static bearer
    token) in *password*. Tokens come from ``azure-identity`` for ``https://datalake.azure.net/``, are
    refreshed before they expire and once more if the service answers 401. 429 and 5xx answers and
    connection errors are retried with exponential backoff (``Retry-After`` is honoured). No token or
    secret is ever logged or put in an error.

    :param adla_conn_id: the connection
    :param retry_limit: attempts per request
    :param retry_delay: first backoff, in seconds (doubled each time, with jitter)
    :param timeout: seconds per HTTP request
    """

    conn_name_attr = "adla_conn_id"
    default_conn_name = "adla_default"
    conn_type = "aml_adla"
    hook_name = "Data Lake Analytics (AML)"

    def __init__(
        self,
        adla_conn_id: str = default_conn_name,
        *,
        retry_limit: int = 5,
        retry_delay: float = 1.0,
        timeout: float = 60.0,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        if retry_limit < 1:
            raise ValueError("retry_limit must be at least 1.")
        self.adla_conn_id = adla_conn_id
        self.retry_limit = retry_limit
        self.retry_delay = retry_delay
        self.timeout = timeout
        self._token: Any = None

    # -- connection -------------------------------------------------------------------------------
    @cached_property
    def connection(self) -> Any:
        return self.get_connection(self.adla_conn_id)

    @cached_property
    def settings(self) -> dict[str, Any]:
        return dict(self.connection.extra_dejson)

    @property
    def account_name(self) -> str:
        return str(self.settings.get("account_name") or "")

    @property
    def endpoint(self) -> str:
        endpoint = self.settings.get("endpoint") or f"https://{self.account_name}.azuredatalakeanalytics.net"
        return str(endpoint).rstrip("/")

    def _credential(self) -> Any:
        kind = self.settings.get("credential", "default_azure_credential")
        if kind == "service_principal":
            from azure.identity import ClientSecretCredential

            options: dict[str, Any] = {}
            if self.settings.get("authority"):
                # A named authority is the user's choice: MSAL must not ask the public cloud about it.
                options = {"authority": self.settings["authority"], "disable_instance_discovery": True}
            return ClientSecretCredential(
                self.settings["tenant_id"], self.settings["client_id"], self.connection.password, **options
            )
        from azure.identity import DefaultAzureCredential

        return DefaultAzureCredential()

    def _bearer(self, *, refresh: bool = False) -> str:
        """A token for the job service; a new one when asked or when the cached one is about to expire."""
        if self.settings.get("credential") == "access_token":
            return str(self.connection.password or "")
        stale = self._token is None or self._token.expires_on - _REFRESH_MARGIN_SECONDS <= time.time()
        if refresh or stale:
            # A new credential object: azure-identity would otherwise hand back its cached token.
            self._token = self._credential().get_token(SCOPE)
        return self._token.token

    # -- requests ---------------------------------------------------------------------------------
    def _request(self, method: str, path: str, *, json: Any = None, ok404: bool = False) -> requests.Response | None:
        url = f"{self.endpoint}{path}"
        refreshed = False
        for attempt in range(1, self.retry_limit + 1):
            token = self._bearer()
            try:
                response = requests.request(
                    method,
                    url,
                    params={"api-version": API_VERSION},
                    json=json,
                    headers={"Authorization": f"Bearer {token}"},
                    timeout=self.timeout,
                )
            except (requests.ConnectionError, requests.Timeout) as exc:
                if attempt == self.retry_limit:
                    raise RemoteServiceError(
                        f"Data Lake Analytics at {self.endpoint} could not be reached after {attempt} attempts: "
                        f"{redact(type(exc).__name__)}"
                    ) from None
                self._backoff(attempt, None, f"{type(exc).__name__}", method, path)
                continue
            if response.status_code == 401 and not refreshed and self.settings.get("credential") != "access_token":
                # The token was revoked or expired early: fetch a new one, once.
                self.log.info("Data Lake Analytics refused the token (401); fetching a new one.")
                self._bearer(refresh=True)
                refreshed = True
                continue
            transient = response.status_code == 429 or response.status_code >= 500
            if transient and attempt < self.retry_limit:
                self._backoff(attempt, response.headers.get("Retry-After"), response.status_code, method, path)
                continue
            if response.status_code == 404 and ok404:
                return None
            if response.status_code >= 400:
                raise RemoteServiceError(self._error_text(response, method, path), status_code=response.status_code)
            return response
        raise RemoteServiceError(
            f"Data Lake Analytics: {method} {path} did not succeed in {self.retry_limit} attempts."
        )

    def _backoff(self, attempt: int, retry_after: str | None, why: object, method: str, path: str) -> None:
        try:
            wait = float(retry_after) if retry_after else self.retry_delay * 2 ** (attempt - 1)
        except ValueError:
            wait = self.retry_delay * 2 ** (attempt - 1)
        wait = min(wait, _MAX_BACKOFF_SECONDS) * (1 + random.random() * 0.1)
        self.log.warning("Data Lake Analytics answered %s to %s %s; retrying in %.1f s.", why, method, path, wait)
        time.sleep(wait)

    def _error_text(self, response: requests.Response, method: str, path: str) -> str:
        try:
            error = response.json().get("error") or {}
            detail = f"{error.get('code', '')}: {error.get('message', '')}".strip(": ")
        except ValueError:
            detail = response.text[:500]
        secrets = [self.connection.password, self._token.token if self._token else None]
        return redact(f"Data Lake Analytics answered {response.status_code} to {method} {path}: {detail}", secrets)

    # -- jobs -------------------------------------------------------------------------------------
    def submit_job(self, job_id: str, body: dict[str, Any]) -> dict[str, Any] | None:
        """``PUT /jobs/{jobId}``: create the job. ``None`` if a job with this id exists already."""
        try:
            response = self._request("PUT", f"/jobs/{quote(job_id)}", json=body)
        except RemoteServiceError as exc:
            if exc.status_code == 409:
                return None
            raise
        assert response is not None
        return response.json()

    def get_job(self, job_id: str) -> dict[str, Any] | None:
        """``GET /jobs/{jobId}``: the job's information, or ``None`` if there is no such job."""
        response = self._request("GET", f"/jobs/{quote(job_id)}", ok404=True)
        return None if response is None else response.json()

    def cancel_job(self, job_id: str) -> None:
        """``POST /jobs/{jobId}/CancelJob``."""
        self._request("POST", f"/jobs/{quote(job_id)}/CancelJob", ok404=True)

    def test_connection(self) -> tuple[bool, str]:
        try:
            self._bearer()
        except Exception as exc:  # the form shows why the credential does not work
            return False, redact(str(exc), [self.connection.password])
        return True, f"Got a token for Data Lake Analytics account '{self.account_name}' at {self.endpoint}."
