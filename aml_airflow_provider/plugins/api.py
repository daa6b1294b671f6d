"""The ``/aml`` FastAPI app (mounted by the plugin on Airflow's API server)."""

from __future__ import annotations

from airflow.api_fastapi.core_api.security import GetUserDep
from fastapi import FastAPI

app = FastAPI(title="Azure ML pipelines on Airflow", version="1", description="Published pipelines and endpoints.")


@app.get("/whoami")
def whoami(user: GetUserDep) -> dict[str, str]:
    return {"user": user.get_name()}
