"""Argument and parameter values are never interpreted by a shell (nor templated): they reach the script,
the remote job or the container as the exact literal strings given.

Each hostile value would, through a shell, create a marker file, delete a file that must stay, expand
to other words, or vanish. Real pipelines run through Airflow with them as step arguments, as parameter
defaults and as values given at submit; the scripts record what they received.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from aml_airflow_provider.core import Experiment
from aml_airflow_provider.core.compute import ComputeTarget, DatabricksCompute, DockerCompute
from aml_airflow_provider.pipeline.core import Pipeline, PipelineData, PipelineParameter
from aml_airflow_provider.pipeline.steps import AdlaStep, DatabricksStep, PythonScriptStep
from tests.support.adla_server import AdlaServer
from tests.support.databricks_server import DatabricksServer
from tests.support.docker_server import DockerEngineStandIn

pytestmark = pytest.mark.e2e

RECORD = """
import json, os, sys
out = sys.argv[sys.argv.index("--out") + 1]
os.makedirs(out, exist_ok=True)
params = {k: v for k, v in os.environ.items() if k.startswith("AML_PARAMETER_")}
json.dump({"argv": sys.argv[1:], "params": params}, open(os.path.join(out, "seen.json"), "w"))
"""


def hostile(markers: Path) -> list[str]:
    """Values a shell would act on: each marker file under ``markers`` appears only if one did."""
    return [
        f"; touch {markers}/semicolon",
        f"$(touch {markers}/dollar)",
        f"`touch {markers}/backtick`",
        f"&& touch {markers}/and",
        f"| tee {markers}/pipe",
        f"x\ntouch {markers}/newline",
        f"; rm -rf {markers}/keep",
        "*",  # a shell would expand it to the files of the working directory
        "$HOME ~ ${PATH} $1",
        "'single' \"double\" \\back\\slash",
        "{{ ds }} {% if true %}jinja{% endif %}",  # pipeline tasks are not templated either
        "",  # a shell would drop an unquoted empty word
        "  two  spaces  ",
        "naïve — ☃",
    ]


def markers_left(markers: Path) -> list[str]:
    return sorted(p.name for p in markers.iterdir() if p.name != "keep")


@pytest.fixture
def markers(tmp_path) -> Path:
    folder = tmp_path / "markers"
    folder.mkdir()
    (folder / "keep").write_text("must survive")
    return folder


def submit(workspace, experiment: str, steps: list, **parameters: str):
    """Run ``steps`` as a pipeline of ``experiment``, with ``parameters`` given at submit; the run."""
    return Experiment(workspace, experiment).submit(Pipeline(workspace, steps), pipeline_parameters=parameters)


def seen_by(run, step: str, output: str, tmp_path: Path) -> dict:
    ref = run.find_step_run(step)[0].get_output_data(output)
    ref.download(str(tmp_path / "download"), overwrite=True, show_progress=False)
    return json.loads((tmp_path / "download" / ref.path_on_datastore / "seen.json").read_text())


def test_python_step_arguments_and_parameters_arrive_literally(workspace, script_dir, markers, tmp_path):
    (script_dir / "record.py").write_text(RECORD)
    (script_dir / "decoy.txt").write_text("a file a shell glob would find")
    values = hostile(markers)
    default = PipelineParameter("by_default", default_value=f"$(touch {markers}/default) *")
    submitted = PipelineParameter("at_submit", default_value="harmless")
    out = PipelineData("seen")
    step = PythonScriptStep(
        "record.py",
        name="record",
        arguments=[*values, "--default", default, "--submitted", submitted, "--out", out],
        outputs=[out],
        source_directory=script_dir,
        allow_reuse=False,
    )
    at_submit = f"`touch {markers}/submitted`; rm -rf {markers}/keep; echo *"
    run = submit(workspace, "shell_literal", [step], at_submit=at_submit)
    assert run.wait_for_completion(show_output=False) == "Finished"

    seen = seen_by(run, "record", "seen", tmp_path)
    assert seen["argv"][: len(values)] == values
    rest = seen["argv"][len(values) :]
    assert rest[:4] == ["--default", f"$(touch {markers}/default) *", "--submitted", at_submit]
    assert seen["params"]["AML_PARAMETER_by_default"] == f"$(touch {markers}/default) *"
    assert seen["params"]["AML_PARAMETER_at_submit"] == at_submit
    assert markers_left(markers) == []
    assert (markers / "keep").read_text() == "must survive"


def test_docker_container_command_is_the_literal_argument_list(workspace, script_dir, markers):
    (script_dir / "record.py").write_text(RECORD)
    values = hostile(markers)
    with DockerEngineStandIn() as engine:
        engine.script(stdout=["done"])
        docker = ComputeTarget.attach(
            workspace, "lit-docker", DockerCompute.attach_configuration(docker_url=engine.url)
        )
        param = PipelineParameter("in_container", default_value="harmless")
        step = PythonScriptStep(
            "record.py",
            name="in container",
            arguments=[*values, "--param", param],
            source_directory=script_dir,
            compute_target=docker,
            allow_reuse=False,
        )
        at_submit = f"$(touch {markers}/container) `id`"
        run = submit(workspace, "shell_literal_docker", [step], in_container=at_submit)
        assert run.wait_for_completion(show_output=False) == "Finished"
        (container,) = engine.containers.values()
    create = container["create"]
    # Exec form: the entry point, the script, then every argument as one list element; no shell.
    assert create["Cmd"][2:] == ["record.py", *values, "--param", at_submit]
    assert create["Cmd"][0] == "python" and not create.get("Entrypoint")
    assert "AML_PARAMETER_in_container=" + at_submit in create["Env"]
    assert markers_left(markers) == []
    docker.detach()


def test_databricks_and_adla_jobs_receive_the_literal_values(
    workspace, blob_datastore, script_dir, monkeypatch, markers
):
    values = hostile(markers)
    (script_dir / "job.usql").write_text(
        '@x = SELECT "@@label@@" AS label FROM @@rows@@;\nOUTPUT @x TO "@@out@@/x.csv";\n'
    )
    with DatabricksServer() as dbx, AdlaServer() as adla:
        for name, value in adla.ca_env().items():
            monkeypatch.setenv(name, value)
        monkeypatch.setenv("AIRFLOW__AML__ADLA_POLL_SECONDS", "0.1")
        monkeypatch.setenv("AIRFLOW__AML__DATABRICKS_POLL_SECONDS", "0.1")
        dbx_compute = ComputeTarget.attach(
            workspace, "lit-dbx", DatabricksCompute.attach_configuration("rg", "dbx", dbx.token, host=dbx.url)
        )
        adla_compute = ComputeTarget.attach(workspace, "lit-adla", adla.attach_configuration())
        for _ in range(2):
            dbx.script_next_run([("TERMINATED", "SUCCESS", "")], notebook_result="ok")
        adla.script_next_job(["Running", "Ended"])
        param = PipelineParameter("label", default_value="harmless")
        rows = PipelineData("rows", datastore=blob_datastore)
        steps = [
            DatabricksStep(
                name="script", python_script_path="dbfs:/jobs/train.py", python_script_params=[*values, param],
                outputs=[rows], existing_cluster_id="0101-lit", compute_target=dbx_compute, allow_reuse=False,
            ),
            DatabricksStep(
                name="notebook", notebook_path="/Shared/lit",
                notebook_params={f"v{i}": v for i, v in enumerate(values)} | {"label": param},
                existing_cluster_id="0101-lit", compute_target=dbx_compute, allow_reuse=False,
            ),
            AdlaStep(
                "job.usql", name="usql", inputs=[rows], outputs=[PipelineData("out", datastore=blob_datastore)],
                params={"label": param}, compute_target=adla_compute, source_directory=script_dir, allow_reuse=False,
            ),
        ]  # fmt: skip
        label = f"$(touch {markers}/label) `id` *"
        run = submit(workspace, "shell_literal_remote", steps, label=label)
        statuses = {s.name: s.get_status() for s in run.get_steps()}
        payloads = {p["run_name"]: p["tasks"][0] for p in dbx.submitted()}
        (job,) = adla.submitted()
    dbx_compute.detach()
    adla_compute.detach()
    assert statuses == {"script": "Finished", "notebook": "Finished", "usql": "Finished"}, statuses
    script_task = next(t for t in payloads.values() if "spark_python_task" in t)["spark_python_task"]
    assert script_task["parameters"][: len(values) + 1] == [*values, label]
    notebook_task = next(t for t in payloads.values() if "notebook_task" in t)["notebook_task"]
    assert {k: notebook_task["base_parameters"][k] for k in (*(f"v{i}" for i in range(len(values))), "label")} == {
        **{f"v{i}": v for i, v in enumerate(values)},
        "label": label,
    }
    assert f'SELECT "{label}" AS label' in job["properties"]["script"]
    assert markers_left(markers) == []


SPARK_RECORD = """
import json, os, sys
out = sys.argv[sys.argv.index("-seen") + 1]
os.makedirs(out, exist_ok=True)
json.dump({"argv": sys.argv[1:]}, open(os.path.join(out, "seen.json"), "w"))
"""
NOTEBOOK = """# Databricks notebook source
import json, os
target = dbutils.widgets.get("nb_out")
os.makedirs(target, exist_ok=True)
json.dump(dbutils.widgets.getAll(), open(os.path.join(target, "seen.json"), "w"))
"""


def test_local_spark_script_and_notebook_receive_the_literal_values(workspace, script_dir, markers, tmp_path):
    # spark-submit is itself a shell script: the values must still arrive untouched.
    (script_dir / "record.py").write_text(SPARK_RECORD)
    (script_dir / "widgets.py").write_text(NOTEBOOK)
    values = hostile(markers)
    spark = ComputeTarget.attach(workspace, "lit-spark", DatabricksCompute.attach_configuration(local=True))
    param = PipelineParameter("label", default_value="harmless")
    seen, nb_out = PipelineData("seen"), PipelineData("nb_out")
    steps = [
        DatabricksStep(
            name="script",
            python_script_name="record.py",
            source_directory=script_dir,
            python_script_params=[*values, param],
            outputs=[seen],
            existing_cluster_id="local",
            compute_target=spark,
            allow_reuse=False,
        ),
        DatabricksStep(
            name="notebook",
            notebook_path=str(script_dir / "widgets.py"),
            notebook_params={**{f"v{i}": v for i, v in enumerate(values)}, "label": param},
            outputs=[nb_out],
            existing_cluster_id="local",
            compute_target=spark,
            allow_reuse=False,
        ),
    ]
    label = f"$(touch {markers}/spark) `id` *"
    run = submit(workspace, "shell_literal_spark", steps, label=label)
    try:
        assert run.wait_for_completion(show_output=False) == "Finished"
    finally:
        spark.detach()
    # The script's own arguments first, then v1's "-<port> <path>" and run-context arguments.
    assert seen_by(run, "script", "seen", tmp_path)["argv"][: len(values) + 1] == [*values, label]
    widgets = seen_by(run, "notebook", "nb_out", tmp_path)
    assert {k: v for k, v in widgets.items() if k != "nb_out"} == {
        **{f"v{i}": v for i, v in enumerate(values)},
        "label": label,
    }
    assert markers_left(markers) == []
