"""Publishing on the embedded default: published pipelines, endpoints and their runs (no server)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from aml_airflow_provider.exceptions import PipelineParameterError, UserErrorException
from aml_airflow_provider.pipeline.core import (
    Pipeline,
    PipelineData,
    PipelineEndpoint,
    PipelineParameter,
    PublishedPipeline,
)
from aml_airflow_provider.pipeline.steps import PythonScriptStep

pytestmark = pytest.mark.e2e

SCRIPT = """
import json, os, sys
os.makedirs(sys.argv[2], exist_ok=True)
json.dump({"n": int(sys.argv[1]), "version": VERSION}, open(os.path.join(sys.argv[2], "out.json"), "w"))
"""


def make_pipeline(workspace, src: Path, version: str) -> Pipeline:
    (src / "emit.py").write_text(SCRIPT.replace("VERSION", repr(version)))
    out = PipelineData("out")
    n = PipelineParameter("n", default_value=1, description="how many")
    return Pipeline(
        workspace, [PythonScriptStep("emit.py", name="emit", arguments=[n, out], outputs=[out], source_directory=src)]
    )


def result(run, tmp_path: Path) -> dict:
    ref = run.find_step_run("emit")[0].get_output_data("out")
    ref.download(str(tmp_path / run.id.replace(":", "_")), overwrite=True, show_progress=False)
    return json.loads((tmp_path / run.id.replace(":", "_") / ref.path_on_datastore / "out.json").read_text())


def test_published_pipeline_runs_the_code_it_was_published_with(workspace, script_dir, tmp_path):
    published = make_pipeline(workspace, script_dir, "v1").publish(
        name="Emit pipeline", description="emits", version="1.0"
    )
    assert published.status == "Active" and published.version == "1.0" and published.get_step_names() == ["emit"]
    assert published.endpoint.endswith(f"/aml/pipelines/{published.id}/submit")
    (script_dir / "emit.py").write_text("raise SystemExit('edited after publishing')\n")
    run = published.submit(workspace, "published_runs", pipeline_parameters={"n": 4})
    assert run.wait_for_completion(show_output=False) == "Finished"
    assert result(run, tmp_path) == {"n": 4, "version": "v1"}
    assert run.dag_id == published.dag_id and run.experiment.name == "published_runs"
    assert PublishedPipeline.get(workspace, published.id).name == "Emit pipeline"
    assert published.id in [p.id for p in PublishedPipeline.get_all(workspace)]
    with pytest.raises(PipelineParameterError, match="with name nope does not exist"):
        published.submit(workspace, "published_runs", pipeline_parameters={"nope": 1})
    published.disable()
    assert PublishedPipeline.get(workspace, published.id).status == "Disabled"
    assert published.id not in [p.id for p in PublishedPipeline.get_all(workspace)]
    with pytest.raises(UserErrorException, match="is disabled"):
        published.submit(workspace, "published_runs")
    published.enable()
    with pytest.raises(UserErrorException, match="No published pipeline with id"):
        PublishedPipeline.get(workspace, "not-an-id")


def test_pipeline_endpoint_versions(workspace, tmp_path):
    first_src, second_src = tmp_path / "one", tmp_path / "two"
    first_src.mkdir()
    second_src.mkdir()
    endpoint = PipelineEndpoint.publish(workspace, "emitter", "an endpoint", make_pipeline(workspace, first_src, "one"))
    assert endpoint.default_version == "0" and endpoint.endpoint.endswith("/aml/endpoints/emitter/submit")
    with pytest.raises(UserErrorException, match="already exists"):
        PipelineEndpoint.publish(workspace, "emitter", make_pipeline(workspace, first_src, "one"), "again")
    endpoint.add(make_pipeline(workspace, second_src, "two"))
    assert endpoint.default_version == "0"
    assert [v["version"] for v in endpoint.list_versions()] == ["0", "1"]
    assert result(endpoint.submit("endpoint_runs", {"n": 2}), tmp_path) == {"n": 2, "version": "one"}
    assert result(endpoint.submit("endpoint_runs", pipeline_version="1"), tmp_path) == {"n": 1, "version": "two"}
    endpoint.set_default_version(1)
    again = PipelineEndpoint.get(workspace, name="emitter")
    assert again.default_version == "1" and again.get_pipeline().id == endpoint.get_pipeline("1").id
    with pytest.raises(UserErrorException, match="has no version '7'"):
        again.set_default_version(7)
