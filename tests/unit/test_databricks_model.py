"""DatabricksCompute attachment and DatabricksStep: v1's validation rules and the spec they produce."""

from __future__ import annotations

import pytest

from aml_airflow_provider.core.compute import ComputeTarget, DatabricksCompute, LocalCompute
from aml_airflow_provider.core.databricks import (
    DatabricksCluster,
    JarLibrary,
    MavenLibrary,
    PyPiLibrary,
    RCranLibrary,
)
from aml_airflow_provider.core.runconfig import RunConfiguration
from aml_airflow_provider.data import DataReference
from aml_airflow_provider.exceptions import ComputeTargetException, ScriptNotFoundError, StepDefinitionError
from aml_airflow_provider.pipeline.core import Pipeline, PipelineData, PipelineParameter
from aml_airflow_provider.pipeline.steps import DatabricksStep

TOKEN = "dapi-model-secret-0123456789"


# -- compute ----------------------------------------------------------------------------------------
def test_attach_registers_a_databricks_connection_holding_host_and_token(workspace):
    config = DatabricksCompute.attach_configuration("rg", "dbx-ws", TOKEN, host="http://127.0.0.1:8765")
    assert TOKEN not in repr(config)
    target = ComputeTarget.attach(workspace, "dbx-model", config)

    found = ComputeTarget(workspace=workspace, name="dbx-model")
    assert isinstance(target, DatabricksCompute) and isinstance(found, DatabricksCompute)
    assert (found.resource_group, found.workspace_name, found.is_local) == ("rg", "dbx-ws", False)
    assert found.databricks_conn_id == "aml_compute.test-ws.dbx-model"
    record = workspace._deployment.get_connection("aml_compute.test-ws.dbx-model")
    assert (record.conn_type, record.host, record.port, record.schema) == ("databricks", "127.0.0.1", 8765, "http")
    assert record.password == TOKEN
    assert TOKEN not in record.extra_json
    assert "dbx-model" in workspace.compute_targets
    assert isinstance(workspace.compute_targets["dbx-model"], DatabricksCompute)

    found.detach()
    with pytest.raises(ComputeTargetException, match="compute target 'dbx-model' not found"):
        ComputeTarget(workspace, "dbx-model")


def test_attach_with_a_workspace_host_defaults_to_https(workspace):
    config = DatabricksCompute.attach_configuration("rg", "ws", TOKEN, host="adb-1234.5.azuredatabricks.net")
    assert (config.host, config.port, config.scheme) == ("adb-1234.5.azuredatabricks.net", None, "https")


def test_attach_reusing_an_airflow_connection_and_local_spark(workspace):
    ComputeTarget.attach(
        workspace, "dbx-shared", DatabricksCompute.attach_configuration(connection_id="databricks_default")
    )
    shared = DatabricksCompute(workspace, "dbx-shared")
    assert (shared.databricks_conn_id, shared.is_local) == ("databricks_default", False)
    record = workspace._deployment.get_connection("aml_compute.test-ws.dbx-shared")
    assert (record.conn_type, record.password) == ("aml_compute", None)

    ComputeTarget.attach(workspace, "spark-local", DatabricksCompute.attach_configuration(local=True))
    local = ComputeTarget(workspace, "spark-local")
    assert isinstance(local, DatabricksCompute) and local.is_local and local.databricks_conn_id is None


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"resource_group": "rg", "workspace_name": "ws", "host": "https://h"}, "needs access_token"),
        ({"access_token": TOKEN}, "needs host="),
        ({"access_token": TOKEN, "host": "ftp://h"}, "is not a workspace host or URL"),
        ({"access_token": TOKEN, "host": "https://h/some/path"}, "is not a workspace host or URL"),
        ({"access_token": TOKEN, "host": "http://h:notaport"}, "is not a workspace host or URL"),
        ({"access_token": TOKEN, "connection_id": "c"}, "do not also give host or access_token"),
        ({"local": True, "host": "https://h"}, "give no host"),
    ],
)
def test_attach_configuration_errors(kwargs, message):
    with pytest.raises(ComputeTargetException, match=message) as info:
        DatabricksCompute.attach_configuration(**kwargs)
    assert TOKEN not in str(info.value)


def test_compute_names_and_types_are_checked(workspace):
    config = DatabricksCompute.attach_configuration(local=True)
    for bad in ("x", "1abc", "has space", "a" * 17, "local"):
        with pytest.raises(ComputeTargetException, match="name"):
            ComputeTarget.attach(workspace, bad, config)
    with pytest.raises(ComputeTargetException, match=r"give what DatabricksCompute\.attach_configuration"):
        ComputeTarget.attach(workspace, "cpu", {"host": "h"})


# -- step -------------------------------------------------------------------------------------------
def _step(**kwargs):
    defaults = dict(name="db", notebook_path="/Users/me/nb", num_workers=1, compute_target="local")
    return DatabricksStep(**{**defaults, **kwargs})


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"python_script_path": "dbfs:/x.py"}, "exactly one of notebook_path"),
        ({"notebook_path": None}, "exactly one of notebook_path"),
        ({"notebook_path": None, "main_class_name": "a.B"}, "main_class_name needs jar_libraries"),
        ({"notebook_path": None, "python_script_name": "train.py"}, "python_script_name and source_directory"),
        ({"source_directory": "."}, "python_script_name and source_directory"),
        ({"python_script_params": ["--a"]}, "python_script_params is for a python script step"),
        ({"notebook_path": None, "python_script_path": "dbfs:/a.py", "notebook_params": {"a": "1"}}, "notebook_params"),
        ({"existing_cluster_id": "c-1"}, "do not also give new-cluster settings \\(num_workers\\)"),
        ({"existing_cluster_id": "c-1", "num_workers": None, "spark_conf": {"a": "b"}}, "spark_conf"),
        ({"permit_cluster_restart": True}, "permit_cluster_restart is only allowed with existing_cluster_id"),
        ({"num_workers": None}, "needs num_workers, or both min_workers and max_workers"),
        ({"num_workers": None, "min_workers": 1}, "needs num_workers, or both"),
        ({"min_workers": 1, "max_workers": 2}, "num_workers or min_workers and max_workers, not both"),
        ({"num_workers": None, "min_workers": 3, "max_workers": 2}, "min_workers \\(3\\) is greater"),
        ({"node_type": "Standard_D3_v2", "instance_pool_id": "pool"}, "node_type or instance_pool_id, not both"),
        ({"num_workers": -1}, "num_workers must be a whole number"),
        ({"timeout_seconds": "soon"}, "timeout_seconds must be a whole number"),
        ({"notebook_params": {"a": ["list"]}}, "notebook_params holds a list"),
        ({"notebook_params": ["a"]}, "notebook_params must be a dict"),
        ({"pypi_libraries": ["pandas"]}, "pypi_libraries holds a str; give PyPiLibrary"),
        ({"compute_target": LocalCompute(), "runconfig": "rc"}, "runconfig must be a RunConfiguration"),
    ],
)
def test_step_validation_names_the_step_and_the_rule(kwargs, message):
    with pytest.raises(StepDefinitionError, match=message) as info:
        _step(**kwargs)
    assert "'db'" in str(info.value) or "[db]" in str(info.value)
    assert isinstance(info.value, ValueError)  # v1 raised ValueError


def test_step_rejects_a_non_databricks_compute(workspace):
    from aml_airflow_provider.core.compute import AmlCompute

    with pytest.raises(StepDefinitionError, match="must be a DatabricksCompute"):
        _step(compute_target=ComputeTarget.__new__(AmlCompute))


def test_failed_step_claims_no_outputs():
    out = PipelineData("out")
    with pytest.raises(StepDefinitionError):
        _step(outputs=[out], num_workers=None)
    _step(name="second", outputs=[out])  # the data is still free to use


def test_python_script_name_is_checked_in_source_directory(script_dir):
    with pytest.raises(ScriptNotFoundError, match="script not found"):
        _step(notebook_path=None, python_script_name="train.py", source_directory=script_dir)
    with pytest.raises(StepDefinitionError, match="inside source_directory"):
        _step(notebook_path=None, python_script_name="../train.py", source_directory=script_dir)


def test_spec_carries_the_jobs_api_cluster_libraries_and_typed_parameters(workspace, script_dir):
    (script_dir / "train.py").write_text("print('hi')\n")
    ComputeTarget.attach(workspace, "dbx", DatabricksCompute.attach_configuration(local=True))
    rate = PipelineParameter("rate", default_value=0.5)
    epochs = PipelineParameter("epochs", default_value=3)
    raw = DataReference(workspace.get_default_datastore(), path_on_datastore="raw", data_reference_name="raw")
    model = PipelineData("model")
    step = DatabricksStep(
        name="train on spark",
        inputs=[raw],
        outputs=[model],
        python_script_name="train.py",
        source_directory=script_dir,
        python_script_params=["--rate", rate, "--epochs", epochs, "--flag", True],
        min_workers=1,
        max_workers=4,
        instance_pool_id="pool-1",
        spark_conf={"spark.speculation": "true"},
        init_scripts=["dbfs:/init.sh"],
        cluster_log_dbfs_path="dbfs:/logs",
        pypi_libraries=[PyPiLibrary("pandas==2.2.2")],
        maven_libraries=[MavenLibrary("org.jsoup:jsoup:1.7.2", exclusions=("slf4j:slf4j",))],
        rcran_libraries=[RCranLibrary("ada")],
        jar_libraries=[JarLibrary("dbfs:/lib.jar")],
        timeout_seconds="600",
        compute_target="dbx",
        version="2",
    )
    spec = Pipeline(workspace, [step]).spec
    (s,) = spec.steps
    assert (s.kind, s.compute, s.version, s.parameters) == ("DatabricksStep", "dbx", "2", ("epochs", "rate"))
    config = s.config
    assert (config["task_kind"], config["task_target"]) == ("python_script_name", "train.py")
    assert config["source_directory"] == str(script_dir.resolve())
    assert config["script_params"] == [
        "--rate", "$AML_PARAMETER_rate", "--epochs", "$AML_PARAMETER_epochs", "--flag", "True",
    ]  # fmt: skip
    assert config["cluster"] == {
        "new_cluster": {
            "spark_version": "10.4.x-scala2.12",
            "instance_pool_id": "pool-1",
            "autoscale": {"min_workers": 1, "max_workers": 4},
            "spark_env_vars": {"PYSPARK_PYTHON": "/databricks/python3/bin/python3"},
            "spark_conf": {"spark.speculation": "true"},
            "init_scripts": [{"dbfs": {"destination": "dbfs:/init.sh"}}],
            "cluster_log_conf": {"dbfs": {"destination": "dbfs:/logs"}},
        }
    }
    assert config["libraries"] == [
        {"maven": {"coordinates": "org.jsoup:jsoup:1.7.2", "exclusions": ["slf4j:slf4j"]}},
        {"pypi": {"package": "pandas==2.2.2"}},
        {"jar": "dbfs:/lib.jar"},
        {"cran": {"package": "ada"}},
    ]
    assert (config["run_name"], config["timeout_seconds"]) == ("train on spark", 600)
    assert [i.name for i in s.inputs] == ["raw"] and [o.name for o in s.outputs] == ["model"]


def test_notebook_params_take_pipeline_parameters_of_any_type(workspace):
    count = PipelineParameter("count", default_value=7)
    flag = PipelineParameter("flag", default_value=True)
    step = _step(
        notebook_params={"count": count, "flag": flag, "label": "x y", "n": 2},
        existing_cluster_id="c-1",
        num_workers=None,
    )
    (s,) = Pipeline(workspace, [step]).spec.steps
    assert s.config["notebook_params"] == {
        "count": "$AML_PARAMETER_count",
        "flag": "$AML_PARAMETER_flag",
        "label": "x y",
        "n": "2",
    }
    assert s.config["cluster"] == {"existing_cluster_id": "c-1", "permit_cluster_restart": False}
    assert s.compute is None  # "local": Spark on the worker
    assert [p.name for p in Pipeline(workspace, [step]).spec.parameters] == ["count", "flag"]


def test_cluster_and_libraries_from_runconfig_but_not_both():
    run = RunConfiguration()
    run.environment.databricks.cluster = DatabricksCluster(num_workers=2, node_type="Standard_DS3_v2")
    run.environment.databricks.pypi_libraries = [PyPiLibrary("scipy")]
    step = _step(num_workers=None, runconfig=run)
    assert step.cluster["new_cluster"]["num_workers"] == 2
    assert step.cluster["new_cluster"]["node_type_id"] == "Standard_DS3_v2"
    assert step.libraries == [{"pypi": {"package": "scipy"}}]
    with pytest.raises(StepDefinitionError, match="either from arguments \\(num_workers\\) or from runconfig"):
        _step(runconfig=run)
    with pytest.raises(StepDefinitionError, match="pypi_libraries comes either from the argument or from runconfig"):
        _step(num_workers=None, runconfig=run, pypi_libraries=[PyPiLibrary("x")])
