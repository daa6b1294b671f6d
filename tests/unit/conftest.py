"""Fixtures shared by the unit tests of the authoring model, the spec and the translator."""

from __future__ import annotations

import pytest


@pytest.fixture
def blobstore(workspace):
    """The workspace's default datastore (a local folder named ``workspaceblobstore``)."""
    from aml_airflow_provider.core import Datastore

    return Datastore(workspace, "workspaceblobstore")


@pytest.fixture
def filestore(workspace):
    """The workspace's second local-folder datastore, ``workspacefilestore``."""
    from aml_airflow_provider.core import Datastore

    return Datastore(workspace, "workspacefilestore")


@pytest.fixture
def make_step(script_dir):
    """``make_step("name", inputs=..., ...)``: a PythonScriptStep running ``<script_dir>/step.py``."""
    from aml_airflow_provider.pipeline.steps import PythonScriptStep

    (script_dir / "step.py").write_text("print('hello')\n")

    def make(name: str, **kwargs):
        kwargs.setdefault("source_directory", script_dir)
        return PythonScriptStep(kwargs.pop("script_name", "step.py"), name=name, **kwargs)

    return make
