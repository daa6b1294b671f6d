"""SQL datastore registrations and DataTransferStep: v1's rules and the spec they produce."""

from __future__ import annotations

import pytest

from aml_airflow_provider.core import Datastore
from aml_airflow_provider.core.compute import AdlaCompute, ComputeTarget
from aml_airflow_provider.core.datastore import AzureMySqlDatastore, AzurePostgreSqlDatastore, AzureSqlDatabaseDatastore
from aml_airflow_provider.data import DataPath, DataReference
from aml_airflow_provider.data.sql_data_reference import SqlDataReference
from aml_airflow_provider.exceptions import DatastoreError, StepDefinitionError, UserErrorException
from aml_airflow_provider.pipeline.core import Pipeline, PipelineData, PipelineParameter
from aml_airflow_provider.pipeline.steps import DataTransferStep, PythonScriptStep

PASSWORD = "sql-pass-0123456789"


@pytest.fixture(scope="module")
def sql_stores(workspace):
    pg = Datastore.register_azure_postgre_sql(
        workspace, "pg", "127.0.0.1", "test", "postgres", PASSWORD, enforce_ssl=False, overwrite=True
    )
    my = Datastore.register_azure_my_sql(workspace, "maria", "127.0.0.1", "test", "root", None, overwrite=True)
    return pg, my


def test_sql_registrations_keep_the_password_in_the_connection(workspace, sql_stores):
    my = sql_stores[1]
    assert isinstance(Datastore(workspace, "pg"), AzurePostgreSqlDatastore)
    assert isinstance(Datastore(workspace, "maria"), AzureMySqlDatastore)
    record = workspace._deployment.get_connection("aml_datastore.test-ws.pg")
    assert record.conn_type == "aml_sql_datastore" and record.password == PASSWORD
    assert dict(record.extra) == {
        "sql_kind": "postgresql",
        "server_name": "127.0.0.1",
        "port": 5432,
        "database_name": "test",
        "user_id": "postgres",
        "ssl": False,
    }
    assert (my.server_name, my.database_name, my.sql_kind) == ("127.0.0.1", "test", "mysql")
    azure = Datastore.register_azure_sql_database(
        workspace, "azsql", "myserver", "db", username="u", password=PASSWORD, overwrite=True
    )
    assert isinstance(azure, AzureSqlDatabaseDatastore)
    assert azure.server_name == "myserver.database.windows.net"  # v1's short server name
    with pytest.raises(UserErrorException, match="service-principal authentication to Azure SQL"):
        Datastore.register_azure_sql_database(
            workspace, "sp", "s", "db", tenant_id="t", client_id="c", client_secret="x"
        )
    with pytest.raises(UserErrorException, match="port_number 70000 is not a TCP port"):
        Datastore.register_azure_my_sql(workspace, "bad", "h", "db", "u", "p", port_number=70000)


def test_a_sql_datastore_is_not_a_file_store(workspace, sql_stores):
    with pytest.raises(DatastoreError, match=r"is a SQL database.*DataTransferStep"):
        Datastore(workspace, "pg").upload_files([__file__])


def test_transfer_step_from_sql_to_a_datastore_folder(workspace, sql_stores, script_dir):
    (script_dir / "read.py").write_text("")
    dest = DataReference(workspace.get_default_datastore(), path_on_datastore="exports", data_reference_name="exports")
    step = DataTransferStep(
        "export",
        source_data_reference=SqlDataReference(sql_stores[0], "orders", sql_query="SELECT * FROM orders"),
        destination_data_reference=dest,
        compute_target="adf-compute",
    )
    out = step.get_output()
    assert (out.name, out.datastore.name) == ("_data_transfer_output", "workspaceblobstore")
    consumer = PythonScriptStep(
        "read.py", name="read", arguments=["--in", out], inputs=[out], source_directory=script_dir
    )
    spec = Pipeline(workspace, [consumer]).spec  # the consumer pulls the copy in, and runs after it
    (s,) = [x for x in spec.steps if x.name == "export"]
    (reader,) = [x for x in spec.steps if x.name == "read"]
    assert (reader.inputs[0].step, reader.inputs[0].output) == (s.task_id, "_data_transfer_output")
    assert s.kind == "DataTransferStep" and s.inputs == ()
    assert s.config["source_sql"] == {
        "datastore": "pg",
        "query": "SELECT * FROM orders",
        "table": None,
        "procedure": None,
        "params": [],
    }
    assert s.config["destination"] == {
        "uri": "azureml://datastores/workspaceblobstore/paths/exports",
        "overwrite": False,
    }
    assert s.config["compute_target"] == "adf-compute" and s.compute is None


def test_transfer_step_into_a_sql_table_and_from_pipeline_data(workspace, sql_stores, script_dir):
    (script_dir / "write.py").write_text("")
    produced = PipelineData("rows")
    PythonScriptStep(
        "write.py", name="write", arguments=["--out", produced], outputs=[produced], source_directory=script_dir
    )
    step = DataTransferStep(
        "load",
        source_data_reference=produced,
        destination_data_reference=SqlDataReference(sql_stores[1], "target", sql_table="sales"),
        source_reference_type="Directory",
    )
    assert step.source_reference_type == "directory"
    assert step.destination == {
        "sql": {"datastore": "maria", "query": None, "table": "sales", "procedure": None, "params": []}
    }
    assert [p.name for p in step.inputs] == ["rows"]


def test_datapath_parameter_destination_and_pipeline_data_destination(workspace):
    store = workspace.get_default_datastore()
    target = PipelineParameter("target", default_value=DataPath(store, "copies/latest"))
    source = DataReference(store, path_on_datastore="raw", data_reference_name="raw")
    step = DataTransferStep("copy", source_data_reference=source, destination_data_reference=target)
    assert step.destination == {"parameter": "target", "overwrite": True}
    assert "target" in step.parameters
    fresh = PipelineData("copied")
    step2 = DataTransferStep("copy2", source_data_reference=source, destination_data_reference=fresh)
    assert step2.get_output() is fresh and step2.destination is None


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"destination_data_reference": None}, "give source_data_reference and destination_data_reference"),
        ({"source_reference_type": "blob"}, "source_reference_type must be 'file' or 'directory'"),
        ({"destination_reference_type": 3}, "destination_reference_type must be 'file' or 'directory'"),
        ({"source_data_reference": "raw"}, "source_data_reference cannot be a str"),
        ({"destination_data_reference": 7}, "destination_data_reference cannot be a int"),
        ({"allow_reuse": "yes"}, "allow_reuse must be True or False"),
    ],
)
def test_transfer_step_validation(workspace, kwargs, message):
    store = workspace.get_default_datastore()
    args = dict(
        name="t",
        source_data_reference=DataReference(store, path_on_datastore="a", data_reference_name="a"),
        destination_data_reference=DataReference(store, path_on_datastore="b", data_reference_name="b"),
    )
    with pytest.raises(StepDefinitionError, match=message):
        DataTransferStep(**{**args, **kwargs})


def test_sql_to_sql_and_non_table_sql_destination_are_refused(workspace, sql_stores):
    pg, my = sql_stores
    with pytest.raises(StepDefinitionError, match="must name a table"):
        DataTransferStep("t", SqlDataReference(pg, "a", sql_table="x"), SqlDataReference(my, "b", sql_query="q"))
    with pytest.raises(StepDefinitionError, match="copy between two SQL datastores through a file datastore"):
        DataTransferStep("t", SqlDataReference(pg, "a", sql_table="x"), SqlDataReference(my, "b", sql_table="y"))


def test_compute_target_must_be_a_data_factory_or_a_name(workspace):
    store = workspace.get_default_datastore()
    ref = DataReference(store, path_on_datastore="a", data_reference_name="a")
    adla = ComputeTarget.__new__(AdlaCompute)
    with pytest.raises(StepDefinitionError, match="must be a DataFactoryCompute or its name"):
        DataTransferStep("t", ref, ref.path("b", "b"), compute_target=adla)


def test_a_sql_reference_elsewhere_says_where_it_belongs(workspace, sql_stores):
    with pytest.raises(StepDefinitionError, match="can only be used by a DataTransferStep"):
        PythonScriptStep("x.py", inputs=[SqlDataReference(sql_stores[0], "q", sql_query="select 1")])


def test_v1_data_factory_code_runs_as_written(workspace):
    from aml_airflow_provider.core.compute import DataFactoryCompute
    from aml_airflow_provider.exceptions import ComputeTargetException

    # The v1 notebook's pattern: find the compute, create it when missing.
    try:
        data_factory = DataFactoryCompute(workspace, "adf-compute")
    except ComputeTargetException as e:
        assert "ComputeTargetNotFound" in e.message
        config = DataFactoryCompute.provisioning_configuration()
        data_factory = ComputeTarget.create(workspace, "adf-compute", config)
        data_factory.wait_for_completion()
    assert isinstance(DataFactoryCompute(workspace, "adf-compute"), DataFactoryCompute)
    store = workspace.get_default_datastore()
    step = DataTransferStep(
        "copy",
        DataReference(store, path_on_datastore="a", data_reference_name="a"),
        DataReference(store, path_on_datastore="b", data_reference_name="b"),
        compute_target=data_factory,
    )
    assert step.compute_name == "adf-compute"
