"""The /aml API asks Airflow's auth manager before writing a DAG document.

Airflow's SimpleAuthManager (the one the server tests run) grants by role, never per DAG, so a
per-DAG policy is played here by a small auth manager that allows everything but running one DAG.
"""

from __future__ import annotations

import pytest
from fastapi import HTTPException

from aml_airflow_provider.dagfile import Catalog, DagDocument
from aml_airflow_provider.plugins import api


class _AllButRunningVictim:
    def is_authorized_dag(self, *, method, access_entity=None, details=None, user=None):
        return not (details.id == "victim" and method == "POST")


@pytest.fixture
def per_dag_policy(monkeypatch, tmp_path):
    import airflow.api_fastapi.app

    monkeypatch.setattr(airflow.api_fastapi.app, "get_auth_manager", _AllButRunningVictim)
    monkeypatch.setattr(api, "catalog", lambda: Catalog(tmp_path))
    return tmp_path


def _schedule(target: str) -> api.DagBody:
    meta = {"id": "s1", "name": "nightly", "pipeline_dag_id": target, "conf": {}, "status": "Active"}
    return api.DagBody(document=DagDocument("aml_schedule_s1", "schedule", meta=meta).to_dict(), title="nightly")


def test_a_schedule_may_only_trigger_a_dag_its_author_may_run(per_dag_policy):
    with pytest.raises(HTTPException) as denied:
        api.put_dag("aml_schedule_s1", _schedule("victim"), user=object())
    assert denied.value.status_code == 403
    assert Catalog(per_dag_policy).read_dag("aml_schedule_s1") is None

    api.put_dag("aml_schedule_s1", _schedule("mine"), user=object())
    assert Catalog(per_dag_policy).read_dag("aml_schedule_s1").meta["pipeline_dag_id"] == "mine"
