"""A canary secret in every kind of connection never shows up where a user or an operator can read it.

Each credential the package keeps (a storage account key, a SAS, a storage connection string,
PostgreSQL and MySQL passwords, a Databricks token, a Data Lake Analytics service principal's secret,
a container registry password, an Airflow API password) is a distinct canary value containing
:data:`MARK`. Real pipelines use all of them, some steps succeeding and some failing because a
service refuses the credential, and then every place their traces land is searched for every
canary, raw and encoded (URL, form, base64, JSON, and a base64 key's raw bytes): every file under
AIRFLOW_HOME (DAG files and specs, the metadata database with XCom and rendered fields, datastores
with step-run records and driver logs), the storage emulator's files, what the submitting process
printed and logged (the task logs of an in-process run included), what the run objects return, the
exceptions raised, the requests sent to Databricks, Data Lake Analytics and Docker, and on a real
Airflow server its task log files, component logs, REST answers and the Pipelines page.

In the in-process run Airflow's secrets masker is switched off, so what is checked is what the
package itself writes, not what Airflow happens to hide.
"""

from __future__ import annotations

import base64
import json
import os
import re
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from urllib.parse import quote, quote_plus, unquote

import pytest
import requests

from aml_airflow_provider.core import Datastore, Experiment, Workspace
from aml_airflow_provider.core.authentication import AirflowAuthentication
from aml_airflow_provider.core.compute import AdlaCompute, ComputeTarget, DatabricksCompute, DockerCompute
from aml_airflow_provider.data import DataReference
from aml_airflow_provider.data.sql_data_reference import SqlDataReference
from aml_airflow_provider.exceptions import ActivityFailedException, UserErrorException, WorkspaceException
from aml_airflow_provider.pipeline.core import Pipeline, PipelineData, PipelineParameter, PipelineRun
from aml_airflow_provider.pipeline.steps import AdlaStep, DatabricksStep, DataTransferStep, PythonScriptStep
from tests.support.adla_server import AdlaServer
from tests.support.azurite import Azurite, running_azurite
from tests.support.databricks_server import DatabricksServer
from tests.support.docker_server import DockerEngineStandIn

#: In every canary. Not only hex digits, so no hash or id contains it by chance.
MARK = "CanaryQ7zX"
ACCOUNT = "canaryacct"
#: An account key is base64 (Azurite decodes it): 84 characters are 63 bytes, and back, exactly.
ACCOUNT_KEY = (f"{MARK}+Acct/Key" + "A" * 84)[:84]
DATABRICKS_TOKEN = f"dapi-{MARK}-databricks-token"
DATABRICKS_WRONG_TOKEN = f"dapi-{MARK}-wrong-token"
ADLA_SECRET = f"{MARK}~adla.client_secret-value"
ADLA_WRONG_SECRET = f"{MARK}~wrong.client_secret"
ADLA_TOKEN = f"{MARK}.adla-static-bearer-token"
MSSQL_PASSWORD = f"ms-{MARK}-p@ssword"
MSSQL_CLIENT_SECRET = f"{MARK}-sql-client-secret"
PG_PASSWORD = f"pg-{MARK}-p@ss:w/rd%?#&"
PG_NO_DB_PASSWORD = f"pg-{MARK}-no-database"
MY_PASSWORD = f"my-{MARK}-p@ss:w/rd"
MY_WRONG_PASSWORD = f"my-{MARK}-wrong"
FORGED_SAS_SIGNATURE = f"{MARK}-forged-signature"
REGISTRY_PASSWORD = f"reg-{MARK}-password"
AIRFLOW_WRONG_PASSWORD = f"af-{MARK}-password"

PREP = """
import json, os, sys
from aml_airflow_provider.core import Run
args = dict(zip(sys.argv[1::2], sys.argv[2::2]))
out = args["--out"]
os.makedirs(out, exist_ok=True)
seen = {
    "argv": sys.argv,
    "environ": dict(os.environ),
    "key_input": open(args["--key-data"]).read(),
    "cs_input": open(args["--cs-data"]).read(),
}
json.dump(seen, open(os.path.join(out, "seen.json"), "w"), indent=1)
Run.get_context().log("rows", 2)
print("prepared with", len(seen["environ"]), "environment variables")
"""
WRITE = """
import os, sys
out = sys.argv[sys.argv.index("--out") + 1]
os.makedirs(out, exist_ok=True)
open(os.path.join(out, "x.txt"), "w").write("x")
print("wrote", out)
"""
USQL = """@rows = EXTRACT line string FROM "@@prepared@@/seen.json" USING Extractors.Text();
OUTPUT @rows TO "@@{out}@@/lines.csv" USING Outputters.Csv();
"""
_WASB = re.compile(r'"wasb://([^@]+)@[^/]+/([^"]+)"')


# -- searching -----------------------------------------------------------------------------------------
def forms(secret: str) -> dict[str, bytes]:
    """The ways a secret could be written down: as is, URL- and form-encoded, base64, JSON-escaped, and
    for a base64 value its raw bytes."""
    written = {
        "raw": secret,
        "url-encoded": quote(secret, safe=""),
        "form-encoded": quote_plus(secret),
        "base64": base64.b64encode(secret.encode()).decode(),
        "json": json.dumps(secret)[1:-1],
    }
    found = {name: value.encode() for name, value in written.items()}
    try:
        decoded = base64.b64decode(secret, validate=True)
    except ValueError:
        decoded = b""
    if len(decoded) >= 16:
        found["base64-decoded"] = decoded
    return found


def leaks(haystack: str | bytes, secrets: dict[str, str]) -> list[str]:
    """``"<secret> (<form>)"`` for every form of every secret found in ``haystack``."""
    data = haystack.encode() if isinstance(haystack, str) else haystack
    return [
        f"{name} ({form})" for name, value in secrets.items() for form, needle in forms(value).items() if needle in data
    ]


def tree_leaks(root: Path, secrets: dict[str, str]) -> tuple[list[str], int]:
    """:func:`leaks` of every file under ``root`` (``"<file>: <leak>"``), and how many files were read."""
    found, files = [], 0
    for path in sorted(root.rglob("*")):
        if path.is_symlink() or not path.is_file():
            continue
        try:
            data = path.read_bytes()
        except OSError:
            continue
        files += 1
        found += [f"{path}: {leak}" for leak in leaks(data, secrets)]
    return found, files


def exception_text(exc: BaseException | None) -> str:
    """``str`` and ``repr`` of an exception and of every exception it chains to."""
    parts: list[str] = []
    seen: set[int] = set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        parts += [str(exc), repr(exc), repr(exc.args)]
        exc = exc.__cause__ or exc.__context__
    return "\n".join(parts)


# -- fixtures ------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def canary_azurite(tmp_path_factory) -> Iterator[Azurite]:
    """An Azurite of its own whose only storage account has the canary key."""
    with running_azurite(tmp_path_factory.mktemp("canary-azurite"), {ACCOUNT: ACCOUNT_KEY}) as server:
        yield server


def container_sas(azurite: Azurite, container: str) -> str:
    """A real SAS for ``container`` (created here), signed with the canary account key."""
    from azure.storage.blob import BlobServiceClient, ContainerSasPermissions, generate_container_sas

    credential = {"account_name": ACCOUNT, "account_key": ACCOUNT_KEY}
    BlobServiceClient(azurite.account_url, credential=credential).create_container(container)
    return generate_container_sas(
        ACCOUNT,
        container,
        account_key=ACCOUNT_KEY,
        permission=ContainerSasPermissions(read=True, add=True, create=True, write=True, delete=True, list=True),
        expiry=datetime.now(UTC) + timedelta(hours=2),
    )


@pytest.fixture
def mysql_user() -> Iterator[str]:
    """A MariaDB user whose password is the canary. (The local PostgreSQL trusts local logins: the
    canary password is sent to it and not checked.)"""
    import sqlalchemy as sa

    user = f"aml_canary_{uuid.uuid4().hex[:8]}"
    admin = sa.create_engine("mysql+pymysql://root@127.0.0.1:3306/test")
    plain = {"no_parameters": True}
    with admin.begin() as conn:
        conn.exec_driver_sql(f"CREATE USER '{user}'@'%' IDENTIFIED BY '{MY_PASSWORD}'", execution_options=plain)
        conn.exec_driver_sql(f"GRANT SELECT ON test.* TO '{user}'@'%'", execution_options=plain)
    try:
        yield user
    finally:
        with admin.begin() as conn:
            conn.exec_driver_sql(f"DROP USER '{user}'@'%'", execution_options=plain)
        admin.dispose()


@pytest.fixture
def canary_cleanup(workspace):
    """Unregister what a test registered in the session's workspace, so later tests never meet it."""
    names: dict[str, list[str]] = {"datastores": [], "computes": [], "connections": []}
    yield names
    from airflow.models.connection import Connection
    from airflow.utils.session import create_session

    for name in names["datastores"]:
        Datastore(workspace, name).unregister()
    for name in names["computes"]:
        ComputeTarget(workspace, name).detach()
    with create_session() as session:
        session.query(Connection).filter(Connection.conn_id.in_(names["connections"])).delete()


@pytest.fixture
def airflow_masks_nothing(monkeypatch):
    """Switch Airflow's secrets masker off (it masks connection passwords it has seen in task logs), so
    the test sees exactly what the package writes."""
    from airflow._shared.secrets_masker import secrets_masker as core_masker
    from airflow.sdk._shared.secrets_masker import secrets_masker as sdk_masker

    for module in (core_masker, sdk_masker):
        monkeypatch.setattr(module.SecretsMasker, "add_mask", lambda self, secret, name=None: None)


# -- the in-process run --------------------------------------------------------------------------------
@pytest.mark.e2e
def test_no_canary_reaches_dag_files_xcom_logs_driver_logs_errors_or_requests(
    workspace,
    canary_azurite,
    mysql_user,
    script_dir,
    tmp_path,
    monkeypatch,
    capfd,
    caplog,
    airflow_masks_nothing,
    canary_cleanup,
):
    from airflow.models.connection import Connection
    from airflow.utils.session import create_session

    ws = workspace
    endpoint = f"http://127.0.0.1:{canary_azurite.port}"
    sas = container_sas(canary_azurite, "canary-sas")
    sas_signature = unquote(dict(p.split("=", 1) for p in sas.split("&"))["sig"])

    # -- every kind of connection, each with its canary ------------------------------------------------
    by_key = Datastore.register_azure_blob_container(
        ws, "canary_key", "canary-key", account_name=ACCOUNT, account_key=ACCOUNT_KEY, endpoint=endpoint,
        create_if_not_exists=True, overwrite=True,
    )  # fmt: skip
    by_sas = Datastore.register_azure_blob_container(
        ws, "canary_sas", "canary-sas", account_name=ACCOUNT, sas_token=sas, endpoint=endpoint, overwrite=True
    )
    by_cs = Datastore.register_azure_blob_container(
        ws, "canary_cs", "canary-cs", connection_string=canary_azurite.connection_string,
        create_if_not_exists=True, overwrite=True,
    )  # fmt: skip
    forged = f"sv=2022-11-02&sr=c&sp=racwdl&se=2099-01-01T00%3A00%3A00Z&spr=https%2Chttp&sig={FORGED_SAS_SIGNATURE}"
    by_forged_sas = Datastore.register_azure_blob_container(
        ws, "canary_forged", "canary-key", account_name=ACCOUNT, sas_token=forged, endpoint=endpoint,
        skip_validation=True, overwrite=True,
    )  # fmt: skip
    pg = Datastore.register_azure_postgre_sql(
        ws, "canary_pg", "127.0.0.1", "test", "postgres", PG_PASSWORD, enforce_ssl=False, overwrite=True
    )
    pg_no_db = Datastore.register_azure_postgre_sql(
        ws, "canary_pg_no_db", "127.0.0.1", f"no_such_db_{uuid.uuid4().hex[:6]}", "postgres", PG_NO_DB_PASSWORD,
        enforce_ssl=False, overwrite=True,
    )  # fmt: skip
    my = Datastore.register_azure_my_sql(ws, "canary_my", "127.0.0.1", "test", mysql_user, MY_PASSWORD, overwrite=True)
    my_wrong = Datastore.register_azure_my_sql(
        ws, "canary_my_wrong", "127.0.0.1", "test", mysql_user, MY_WRONG_PASSWORD, overwrite=True
    )
    mssql = Datastore.register_azure_sql_database(
        ws, "canary_mssql", "127.0.0.1", "test", username="sa", password=MSSQL_PASSWORD, overwrite=True
    )
    canary_cleanup["datastores"] += [
        d.name for d in (by_key, by_sas, by_cs, by_forged_sas, pg, pg_no_db, my, my_wrong, mssql)
    ]
    # Refused when registered (no service-principal SQL authentication here): the message keeps the secret out.
    with pytest.raises(UserErrorException) as no_principal:
        Datastore.register_azure_sql_database(
            ws, "canary_mssql_sp", "127.0.0.1", "test", tenant_id="t", client_id="c",
            client_secret=MSSQL_CLIENT_SECRET,
        )  # fmt: skip
    # A second workspace whose default datastore is a container of the canary account.
    other = Workspace.create(
        "canary-ws", storage_account=canary_azurite.connection_string, exist_ok=True, show_output=False
    )
    config = Path(other.write_config(path=str(tmp_path / "config")))
    canary_cleanup["connections"] += [r.conn_id for r in ws._deployment.list_connections("aml_datastore.canary-ws.")]
    canary_cleanup["connections"].append("aml_workspace.canary-ws")
    registry = f"canary_registry_{uuid.uuid4().hex[:6]}"
    canary_cleanup["connections"].append(registry)
    with create_session() as session:
        session.add(
            Connection(
                conn_id=registry,
                conn_type="docker",
                host="registry.canary.invalid",
                login="canary-user",
                password=REGISTRY_PASSWORD,
            )
        )

    with DatabricksServer(token=DATABRICKS_TOKEN) as dbx, AdlaServer() as adla, DockerEngineStandIn() as docker:
        adla.client_secret = ADLA_SECRET
        for name, value in adla.ca_env().items():
            monkeypatch.setenv(name, value)
        monkeypatch.setenv("AIRFLOW__AML__ADLA_POLL_SECONDS", "0.1")
        monkeypatch.setenv("AIRFLOW__AML__DATABRICKS_POLL_SECONDS", "0.1")
        dbx_ok = ComputeTarget.attach(
            ws, "canary-dbx", DatabricksCompute.attach_configuration("rg", "dbx", DATABRICKS_TOKEN, host=dbx.url)
        )
        dbx_wrong = ComputeTarget.attach(
            ws,
            "canary-dbx-bad",
            DatabricksCompute.attach_configuration("rg", "dbx", DATABRICKS_WRONG_TOKEN, host=dbx.url),
        )
        adla.static_token = ADLA_TOKEN
        adla_ok = ComputeTarget.attach(ws, "canary-adla", adla.attach_configuration())
        adla_by_token = ComputeTarget.attach(
            ws,
            "canary-adla-tok",
            AdlaCompute.attach_configuration("rg", adla.account, adla.url, access_token=ADLA_TOKEN),
        )
        adla_wrong = ComputeTarget.attach(
            ws,
            "canary-adla-bad",
            AdlaCompute.attach_configuration(
                "rg", adla.account, endpoint=adla.url, tenant_id=adla.tenant_id, client_id=adla.client_id,
                client_secret=ADLA_WRONG_SECRET, authority=adla.authority,
            ),
        )  # fmt: skip
        in_container = ComputeTarget.attach(
            ws, "canary-docker", DockerCompute.attach_configuration(docker_url=docker.url)
        )
        behind_login = ComputeTarget.attach(
            ws, "canary-login", DockerCompute.attach_configuration(docker_url=docker.url, docker_conn_id=registry)
        )
        canary_cleanup["computes"] += [
            c.name for c in (dbx_ok, dbx_wrong, adla_ok, adla_wrong, in_container, behind_login)
        ]

        # -- data the steps read, uploaded with the canary credentials ---------------------------------
        (tmp_path / "in").mkdir()
        (tmp_path / "in" / "raw.csv").write_text("a,b\n1,2\n")
        by_key.upload_files([str(tmp_path / "in" / "raw.csv")], target_path="in", overwrite=True)
        by_cs.upload_files([str(tmp_path / "in" / "raw.csv")], target_path="in", overwrite=True)
        (script_dir / "prep.py").write_text(PREP)
        (script_dir / "write.py").write_text(WRITE)
        (script_dir / "lines.usql").write_text(USQL.format(out="lines"))
        (script_dir / "lines_bad.usql").write_text(USQL.format(out="lines_bad"))
        (script_dir / "lines_tok.usql").write_text(USQL.format(out="lines_tok"))

        def adla_engine(body: dict) -> None:  # writes the job's output, as the service would
            from azure.storage.blob import BlobServiceClient

            _, (container, path) = _WASB.findall(body["properties"]["script"])
            service = BlobServiceClient.from_connection_string(canary_azurite.connection_string)
            service.get_blob_client(container, path).upload_blob(b"line\n", overwrite=True)

        adla.on_submit = adla_engine
        for _ in range(2):
            adla.script_next_job(["Accepted", "Running", "Ended"])
        dbx.script_next_run([("RUNNING", None, "In run"), ("TERMINATED", "SUCCESS", "")], notebook_result="done")
        docker.script(stdout=["ran in a container"])

        key_data = DataReference(by_key, "key_data", "in/raw.csv")
        cs_data = DataReference(by_cs, "cs_data", "in/raw.csv")
        prepared = PipelineData("prepared", datastore=by_sas)
        forged_out, docker_out = PipelineData("forged_out", datastore=by_forged_sas), PipelineData("docker_out")
        level = PipelineParameter("level", default_value="info")
        src = dict(source_directory=script_dir, allow_reuse=False)

        def export(name: str, store: Datastore, target: Datastore, path: str) -> DataTransferStep:
            port = name.replace(" ", "_")
            return DataTransferStep(
                name,
                source_data_reference=SqlDataReference(store, f"{port}_rows", sql_query="SELECT 1 AS one"),
                destination_data_reference=DataReference(target, f"{port}_csv", path, overwrite=True),
                allow_reuse=False,
            )

        steps = [
            PythonScriptStep(
                "prep.py", name="prep", arguments=["--key-data", key_data, "--cs-data", cs_data, "--out", prepared],
                inputs=[key_data, cs_data], outputs=[prepared], **src,
            ),
            export("export pg", pg, by_key, "landing/pg.csv"),
            export("export my", my, by_cs, "landing/my.csv"),
            DatabricksStep(
                name="notebook", inputs=[prepared], notebook_path="/Shared/canary", notebook_params={"level": level},
                existing_cluster_id="0101-canary", compute_target=dbx_ok, allow_reuse=False,
            ),
            AdlaStep(
                "lines.usql", name="usql", inputs=[prepared], outputs=[PipelineData("lines", datastore=by_key)],
                compute_target=adla_ok, **src,
            ),
            AdlaStep(
                "lines_tok.usql", name="usql by token", inputs=[prepared],
                outputs=[PipelineData("lines_tok", datastore=by_key)], compute_target=adla_by_token, **src,
            ),
            PythonScriptStep("prep.py", name="in container", arguments=["--key-data", key_data], inputs=[key_data],
                             compute_target=in_container, **src),
            # Each of these fails: a service refuses the credential.
            PythonScriptStep(
                "write.py", name="forged sas", arguments=["--out", forged_out], outputs=[forged_out], **src
            ),
            export("pg no database", pg_no_db, by_key, "landing/none.csv"),
            export("my wrong password", my_wrong, by_key, "landing/wrong.csv"),
            export("sql server", mssql, by_key, "landing/mssql.csv"),
            DatabricksStep(
                name="notebook wrong token", notebook_path="/Shared/canary", existing_cluster_id="0101-canary",
                compute_target=dbx_wrong, allow_reuse=False,
            ),
            AdlaStep(
                "lines_bad.usql", name="usql wrong secret", inputs=[prepared],
                outputs=[PipelineData("lines_bad", datastore=by_key)], compute_target=adla_wrong, **src,
            ),
            PythonScriptStep("write.py", name="registry login", arguments=["--out", docker_out], outputs=[docker_out],
                             compute_target=behind_login, **src),
        ]  # fmt: skip
        run = Experiment(ws, "canary_secrets").submit(
            Pipeline(ws, steps), pipeline_parameters={"level": "debug"}, continue_on_step_failure=True
        )
        with pytest.raises(ActivityFailedException) as failed:
            run.wait_for_completion(show_output=True)

        # -- everything the run objects tell a user -----------------------------------------------------
        step_runs = run.get_steps()
        statuses = {s.name: s.get_status() for s in step_runs}
        told = [exception_text(failed.value), run.summary(), repr(run), json.dumps(run.get_details(), default=str)]
        told += [exception_text(no_principal.value), config.read_text(), repr(other), repr(other.datastores)]
        for step in step_runs:
            told += [
                repr(step),
                json.dumps(step.get_details_with_logs(), default=str),
                step.get_job_log(),
                json.dumps(step._xcoms(), default=str),
                json.dumps(step.get_metrics(), default=str),
                repr(step.get_outputs()),
            ]
        ref = run.find_step_run("prep")[0].get_output_data("prepared")
        ref.download(str(tmp_path / "prepared"), show_progress=False)
        seen = json.loads((tmp_path / "prepared" / ref.path_on_datastore / "seen.json").read_text())
        # What went to the services: bodies and query strings (the tokens belong in Authorization only).
        sent_to_databricks = json.dumps([[r.path, r.query, r.body] for r in dbx.requests], default=str)
        sent_to_adla = json.dumps([[r.path, r.query, r.body] for r in adla.requests], default=str)
        # The registry login (POST /auth) is where the engine is meant to get the registry password.
        logins = [r for r in docker.requests if r.path == "/auth"]
        sent_to_docker = json.dumps([list(r) for r in docker.requests if r.path != "/auth"], default=str)
        (container,) = docker.containers.values()
        auth_headers = [r.header("Authorization") for r in dbx.requests]

    out, err = capfd.readouterr()
    secrets = {
        "account key": ACCOUNT_KEY,
        "SAS signature": sas_signature,
        "forged SAS signature": FORGED_SAS_SIGNATURE,
        "Databricks token": DATABRICKS_TOKEN,
        "wrong Databricks token": DATABRICKS_WRONG_TOKEN,
        "ADLA client secret": ADLA_SECRET,
        "wrong ADLA client secret": ADLA_WRONG_SECRET,
        "PostgreSQL password": PG_PASSWORD,
        "PostgreSQL password (no database)": PG_NO_DB_PASSWORD,
        "MySQL password": MY_PASSWORD,
        "wrong MySQL password": MY_WRONG_PASSWORD,
        "registry password": REGISTRY_PASSWORD,
        "ADLA access token": ADLA_TOKEN,
        "SQL Server password": MSSQL_PASSWORD,
        "SQL Server client secret": MSSQL_CLIENT_SECRET,
    }

    # The run did what it should, so the places searched hold its traces (a test that found nothing
    # because nothing ran would prove nothing).
    assert statuses == {
        "prep": "Finished",
        "export pg": "Finished",
        "export my": "Finished",
        "notebook": "Finished",
        "usql": "Finished",
        "usql by token": "Finished",
        "in container": "Finished",
        "forged sas": "Failed",
        "pg no database": "Failed",
        "my wrong password": "Failed",
        "sql server": "Failed",
        "notebook wrong token": "Failed",
        "usql wrong secret": "Failed",
        "registry login": "Failed",
    }
    assert seen["key_input"] == seen["cs_input"] == "a,b\n1,2\n"
    console = out + err + caplog.text
    for refusal in (
        "AuthorizationFailure",  # the forged SAS
        "does not exist",  # PostgreSQL: no such database
        "Access denied",  # MariaDB: wrong password
        "Invalid access token",  # Databricks: wrong token
        "AADSTS7000215",  # Entra ID: wrong client secret
        "Login failed",  # the registry
    ):
        assert refusal in console, f"the task logs do not show the refusal {refusal!r}"
    assert "ran in a container" in console and "prepared with" in "\n".join(told)
    assert [r.body["password"] for r in logins] == [REGISTRY_PASSWORD]
    assert [h for h in auth_headers if h] and all(
        h in (f"Bearer {DATABRICKS_TOKEN}", f"Bearer {DATABRICKS_WRONG_TOKEN}") for h in auth_headers if h
    )

    assert leaks("\n".join(told), secrets) == [], "the run objects or the exception"
    assert leaks(console, secrets) == [], "what the process printed and logged (task logs included)"
    assert leaks(json.dumps(seen), secrets) == [], "what the step's script saw (argv, environment, inputs)"
    assert leaks(sent_to_databricks + sent_to_adla + sent_to_docker, secrets) == [], "requests to services"
    # The container got the data as a path on the worker, never a credential to fetch it with.
    env = dict(e.split("=", 1) for e in container["create"]["Env"])
    assert env["AZUREML_DATAREFERENCE_key_data"].endswith("/raw.csv")

    home = Path(os.environ["AIRFLOW_HOME"])
    documents = list((home / "dags" / "aml_pipelines").glob("canary_secrets.*"))
    assert {p.suffix for p in documents} == {".json", ".py"}
    assert "canary_key" in (home / "dags" / "aml_pipelines" / "canary_secrets.json").read_text()
    found, files = tree_leaks(home, secrets)
    assert found == [] and files > 10, "files under AIRFLOW_HOME"
    found, files = tree_leaks(canary_azurite.location, secrets)
    assert found == [] and files > 0, "the storage emulator's files"


# -- a real Airflow server -----------------------------------------------------------------------------
SERVER_SCRIPT = """
import os, sys
args = dict(zip(sys.argv[1::2], sys.argv[2::2]))
os.makedirs(args["--out"], exist_ok=True)
rows = open(args["--data"]).read().splitlines()
open(os.path.join(args["--out"], "count.txt"), "w").write(str(len(rows)))
print("counted", len(rows), "rows at level", args["--level"])
"""


@pytest.mark.server
def test_on_an_airflow_server_no_canary_in_task_logs_rest_answers_or_the_pipelines_page(
    airflow_server, azurite, canary_azurite, tmp_path
):
    from tests.server.conftest import workspace_on

    # A wrong Airflow password: refused, and the message does not repeat it.
    wrong = AirflowAuthentication("admin", AIRFLOW_WRONG_PASSWORD, airflow_url=airflow_server.url)
    with pytest.raises(WorkspaceException) as refused:
        wrong.get_token()
    assert "refused to log in user 'admin'" in str(refused.value)
    said = [exception_text(refused.value), repr(wrong)]

    endpoint = f"http://127.0.0.1:{canary_azurite.port}"
    with (
        workspace_on(airflow_server, azurite, "canary-srv") as (ws, auth),
        DatabricksServer(token=DATABRICKS_TOKEN) as dbx,
    ):
        config_path = Path(ws.write_config(path=str(tmp_path)))
        said.append(config_path.read_text())
        by_key = Datastore.register_azure_blob_container(
            ws, "canary_key", "canary-srv", account_name=ACCOUNT, account_key=ACCOUNT_KEY, endpoint=endpoint,
            create_if_not_exists=True, overwrite=True,
        )  # fmt: skip
        # Airflow refuses a connection id this long (422, quoting what was sent): the error has no key either.
        with pytest.raises(WorkspaceException) as too_long:
            Datastore.register_azure_blob_container(
                ws, "x" * 255, "canary-srv", account_name=ACCOUNT, account_key=ACCOUNT_KEY, endpoint=endpoint,
                skip_validation=True,
            )  # fmt: skip
        assert "422" in str(too_long.value)
        said.append(exception_text(too_long.value))
        from azure.storage.blob import BlobServiceClient

        BlobServiceClient.from_connection_string(canary_azurite.connection_string).get_blob_client(
            "canary-srv", "in/rows.txt"
        ).upload_blob(b"a\nb\nc\n", overwrite=True)
        dbx_compute = ComputeTarget.attach(
            ws, "canary-dbx-srv", DatabricksCompute.attach_configuration("rg", "dbx", DATABRICKS_TOKEN, host=dbx.url)
        )
        # Running for a dozen polls: Airflow 3.3 fails a deferred task whose trigger fires before the
        # scheduler has handled the executor's report of the deferral (apache/airflow#72716, #71580), which a
        # loaded machine can delay by seconds.
        dbx.script_next_run([("RUNNING", None, "In run")] * 12 + [("TERMINATED", "SUCCESS", "")], notebook_result="ok")
        src = tmp_path / "src"
        src.mkdir()
        (src / "count.py").write_text(SERVER_SCRIPT)
        data = DataReference(by_key, "rows", "in/rows.txt")
        counted = PipelineData("counted", datastore=by_key)
        level = PipelineParameter("level", default_value="info", description="how much to say")
        pipeline = Pipeline(
            ws,
            [
                PythonScriptStep(
                    "count.py", name="count", arguments=["--data", data, "--out", counted, "--level", level],
                    inputs=[data], outputs=[counted], source_directory=src, allow_reuse=False,
                ),
                DatabricksStep(
                    name="notebook", inputs=[counted], notebook_path="/Shared/canary",
                    notebook_params={"level": level}, existing_cluster_id="0101-canary", compute_target=dbx_compute,
                    allow_reuse=False,
                ),
            ],
        )  # fmt: skip
        published = pipeline.publish(name="Canary pipeline", description="uses every canary")
        headers = auth.get_authentication_header()
        response = requests.post(
            published.endpoint,
            headers=headers,
            json={"ExperimentName": "canary_srv", "ParameterAssignments": {"level": "debug"}},
            timeout=60,
        )
        assert response.status_code == 200, response.text
        run = PipelineRun.get(ws, response.json()["Id"])
        status = run.wait_for_completion(show_output=False, timeout_seconds=180, raise_on_error=False)
        steps = {s.name: s for s in run.get_steps()}
        api = airflow_server.url
        task_logs = {
            name: requests.get(
                f"{api}/api/v2/dags/{published.dag_id}/dagRuns/{run.id}/taskInstances/{step.task_id}/logs/1",
                headers=headers,
                params={"full_content": True},
                timeout=60,
            ).text
            for name, step in steps.items()
        }
        assert status == "Finished", task_logs
        assert {n: s.get_status() for n, s in steps.items()} == {"count": "Finished", "notebook": "Finished"}
        assert "counted 3 rows at level debug" in steps["count"].get_job_log()

        page = requests.get(f"{api}/aml/ui/", headers=headers, timeout=60)
        listing = requests.get(f"{api}/aml/pipelines", headers=headers, timeout=60)
        assert page.status_code == 200 and "Canary pipeline" in page.text and "how much to say" in page.text
        said += [page.text, listing.text]
        for conn_id in ("aml_datastore.canary-srv.canary_key", "aml_compute.canary-srv.canary-dbx-srv"):
            answer = requests.get(f"{api}/api/v2/connections/{conn_id}", headers=headers, timeout=60)
            assert answer.status_code == 200
            said.append(answer.text)
        for step in steps.values():
            said += [json.dumps(step._xcoms(), default=str), step.get_job_log()]
            ti = f"{api}/api/v2/dags/{published.dag_id}/dagRuns/{run.id}/taskInstances/{step.task_id}"
            said.append(requests.get(ti, headers=headers, timeout=60).text)  # rendered fields too
        said += list(task_logs.values())
        said.append(json.dumps([[r.path, r.query, r.body] for r in dbx.requests], default=str))
        dbx_compute.detach()
        by_key.unregister()

    secrets = {
        "account key": ACCOUNT_KEY,
        "Databricks token": DATABRICKS_TOKEN,
        "Airflow password": AIRFLOW_WRONG_PASSWORD,
    }
    assert leaks("\n".join(said), secrets) == []
    # Task log files, component logs (API server, scheduler, DAG processor, triggerer), DAG files, specs.
    time.sleep(1)  # the last log lines reach their files
    found, files = tree_leaks(airflow_server.home, secrets)
    assert found == [] and files > 10
    task_logs = list((airflow_server.home / "logs").glob(f"dag_id={published.dag_id}/**/*.log"))
    assert len(task_logs) >= 2 and any("counted 3 rows" in p.read_text() for p in task_logs)
