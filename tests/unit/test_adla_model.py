"""AdlaCompute attachment and AdlaStep: v1's rules, placeholders checked at build time, the spec."""

from __future__ import annotations

import pytest

from aml_airflow_provider.core.compute import AdlaCompute, ComputeTarget, DatabricksCompute
from aml_airflow_provider.data import DataReference
from aml_airflow_provider.exceptions import ComputeTargetException, ScriptNotFoundError, StepDefinitionError
from aml_airflow_provider.pipeline.core import Pipeline, PipelineData, PipelineParameter
from aml_airflow_provider.pipeline.steps import AdlaStep

SECRET = "adla-client-secret-0123456789"
SCRIPT = """
@rows = EXTRACT id int, v int FROM "@@raw@@" USING Extractors.Csv(skipFirstNRows: 1);
@big = SELECT * FROM @rows WHERE v > @@threshold@@;
OUTPUT @big TO "@@filtered@@/out.csv" USING Outputters.Csv();
"""


def test_attach_service_principal_keeps_the_secret_in_the_connection_only(workspace):
    config = AdlaCompute.attach_configuration("rg", "myadla", tenant_id="t", client_id="c", client_secret=SECRET)
    assert SECRET not in repr(config)
    ComputeTarget.attach(workspace, "adla", config)
    found = ComputeTarget(workspace, "adla")
    assert isinstance(found, AdlaCompute)
    assert (found.account_name, found.endpoint) == ("myadla", "https://myadla.azuredatalakeanalytics.net")
    record = workspace._deployment.get_connection("aml_compute.test-ws.adla")
    assert (record.conn_type, record.password) == ("aml_adla", SECRET)
    assert record.extra["credential"] == "service_principal" and SECRET not in record.extra_json
    found.detach()


def test_attach_token_default_credential_and_test_endpoint(workspace):
    token = AdlaCompute.attach_configuration("rg", "acct1", endpoint="http://127.0.0.1:8766/", access_token="tok")
    assert (token.endpoint, token.credential, token.secret) == ("http://127.0.0.1:8766", "access_token", "tok")
    default = AdlaCompute.attach_configuration("rg", "acct1")
    assert (default.credential, default.secret) == ("default_azure_credential", None)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"account_name": "My_Account"}, "3-24 lowercase letters and digits"),
        ({"account_name": "acct", "endpoint": "ftp://x"}, "base URL"),
        ({"account_name": "acct", "endpoint": "https://x/jobs"}, "base URL"),
        ({"account_name": "acct", "tenant_id": "t", "client_id": "c"}, r"missing: client_secret"),
        ({"account_name": "acct", "client_secret": SECRET, "access_token": "x"}, "not both"),
        ({"account_name": "acct", "access_token": " "}, "non-empty"),
    ],
)
def test_attach_configuration_errors(kwargs, message):
    with pytest.raises(ComputeTargetException, match=message) as info:
        AdlaCompute.attach_configuration("rg", **kwargs)
    assert SECRET not in str(info.value)


def test_a_databricks_compute_is_not_an_adla_one(workspace):
    ComputeTarget.attach(workspace, "spark2", DatabricksCompute.attach_configuration(local=True))
    with pytest.raises(ComputeTargetException, match="is a Databricks target, not a AdlaCompute"):
        AdlaCompute(workspace, "spark2")


@pytest.fixture
def usql(script_dir):
    (script_dir / "filter.usql").write_text(SCRIPT)
    return script_dir


def test_step_spec_and_placeholders(workspace, usql):
    ComputeTarget.attach(workspace, "adla", AdlaCompute.attach_configuration("rg", "myadla", access_token="t"))
    raw = DataReference(workspace.get_default_datastore(), path_on_datastore="raw.csv", data_reference_name="raw")
    filtered = PipelineData("filtered")
    threshold = PipelineParameter("threshold", default_value=10)
    step = AdlaStep(
        "filter.usql",
        inputs=[raw],
        outputs=[filtered],
        params={"threshold": threshold},
        degree_of_parallelism=-3,
        priority=100,
        runtime_version="default",
        compute_target=ComputeTarget(workspace, "adla"),
        source_directory=usql,
    )
    assert step.name == "filter.usql"  # v1: the name defaults to the script
    (s,) = Pipeline(workspace, [step]).spec.steps
    assert (s.kind, s.compute, s.parameters) == ("AdlaStep", "adla", ("threshold",))
    assert s.config["params"] == {"threshold": "$AML_PARAMETER_threshold"}
    assert (s.config["degree_of_parallelism"], s.config["priority"], s.config["runtime_version"]) == (1, 100, "default")


def test_a_placeholder_without_a_value_is_an_error_naming_it(workspace, usql):
    raw = DataReference(workspace.get_default_datastore(), path_on_datastore="raw.csv", data_reference_name="raw")
    with pytest.raises(StepDefinitionError, match=r"uses @@threshold@@, which is no input, output or params key"):
        AdlaStep("filter.usql", name="f", inputs=[raw], outputs=[PipelineData("filtered")], compute_target="adla",
                 source_directory=usql)  # fmt: skip
    with pytest.raises(StepDefinitionError, match=r"@@raw@@.*\(also: filtered\)"):
        AdlaStep("filter.usql", params={"threshold": 1}, compute_target="adla", source_directory=usql)


@pytest.mark.parametrize(
    ("kwargs", "message", "error"),
    [
        ({"compute_target": None}, "compute_target is required", StepDefinitionError),
        ({"compute_target": "local"}, "must be an AdlaCompute or its name", StepDefinitionError),
        ({"priority": 0}, "priority must be a whole number of at least 1", StepDefinitionError),
        ({"degree_of_parallelism": "4"}, "degree_of_parallelism must be a whole number", StepDefinitionError),
        ({"runtime_version": ""}, "runtime_version must be a non-empty string", StepDefinitionError),
        ({"params": {"threshold": [1]}}, r"params\['threshold'\] is a list", StepDefinitionError),
        ({"script_name": "../x.usql"}, "inside source_directory", StepDefinitionError),
        ({"script_name": "missing.usql"}, "script not found", ScriptNotFoundError),
    ],
)
def test_step_validation(workspace, usql, kwargs, message, error):
    raw = DataReference(workspace.get_default_datastore(), path_on_datastore="raw.csv", data_reference_name="raw")
    args = dict(
        script_name="filter.usql",
        name="filter",
        inputs=[raw],
        outputs=[PipelineData("filtered")],
        params={"threshold": 1},
        compute_target="adla",
        source_directory=usql,
    )
    with pytest.raises(error, match=message):
        AdlaStep(**{**args, **kwargs})
