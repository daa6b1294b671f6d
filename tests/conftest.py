"""Test-session setup: a private AIRFLOW_HOME (set before anything imports Airflow) and shared fixtures."""

from __future__ import annotations

import os
import tempfile

# Airflow reads AIRFLOW_HOME once, when it is first imported: give the whole session its own.
_SESSION_HOME = tempfile.mkdtemp(prefix="aml-test-airflow-")
os.environ["AIRFLOW_HOME"] = _SESSION_HOME
os.environ.setdefault("AIRFLOW__CORE__LOAD_EXAMPLES", "False")
os.environ.setdefault("AIRFLOW__CORE__UNIT_TEST_MODE", "False")

pytest_plugins = ["tests.support.azurite"]
