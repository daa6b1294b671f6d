"""Workspace and Datastore as a v1 user drives them: registration, config files, upload and download.

Datastore tests run on both kinds: a local folder and a blob container on Azurite.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from aml_airflow_provider.core import Datastore, Workspace
from aml_airflow_provider.exceptions import (
    DatastoreError,
    DatastoreNotFoundError,
    UserErrorException,
    WorkspaceException,
)


@pytest.fixture(params=["local", "blob"])
def store(request, workspace, tmp_path):
    """A fresh, empty datastore of each kind."""
    name = f"api_{request.param}_{tmp_path.name[-12:].replace('-', '_')}"
    if request.param == "local":
        return Datastore.register_local_folder(workspace, name, tmp_path / "store")
    azurite = request.getfixturevalue("azurite")
    container = request.getfixturevalue("blob_container")
    return Datastore.register_azure_blob_container(
        workspace,
        name,
        container,
        account_name=azurite.account_name,
        account_key=azurite.account_key,
        protocol="http",
        endpoint=f"127.0.0.1:{azurite.port}",
    )


def make_files(root: Path, files: dict[str, str]) -> Path:
    for rel, text in files.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_text(text)
    return root


def test_upload_skips_existing_files_unless_overwrite(store, tmp_path, capsys):
    src = make_files(tmp_path / "src", {"a.csv": "1", "sub/b.csv": "2"})
    ref = store.upload(str(src), target_path="data", show_progress=True)
    assert (ref.datastore, ref.path_on_datastore) == (store, "data")
    assert "Uploaded 2 files" in capsys.readouterr().out
    (src / "a.csv").write_text("changed")
    store.upload(str(src), target_path="data", show_progress=True)
    assert "skipped 2 that already exist" in capsys.readouterr().out
    assert store.download(str(tmp_path / "d1"), prefix="data/a.csv", show_progress=False) == 1
    assert (tmp_path / "d1" / "data" / "a.csv").read_text() == "1"
    store.upload(str(src), target_path="data", overwrite=True, show_progress=False)
    assert store.download(str(tmp_path / "d2"), prefix="data", show_progress=False) == 2
    assert (tmp_path / "d2" / "data" / "a.csv").read_text() == "changed"
    assert (tmp_path / "d2" / "data" / "sub" / "b.csv").read_text() == "2"


def test_upload_files_lands_files_relative_to_their_common_folder(store, tmp_path):
    src = make_files(tmp_path / "src", {"x/one.txt": "1", "x/deep/two.txt": "2", "elsewhere/three.txt": "3"})
    store.upload_files([str(src / "x/one.txt"), str(src / "x/deep/two.txt")], target_path="t", show_progress=False)
    assert store.download(str(tmp_path / "got"), prefix="t", show_progress=False) == 2
    assert (tmp_path / "got" / "t" / "one.txt").read_text() == "1"
    assert (tmp_path / "got" / "t" / "deep" / "two.txt").read_text() == "2"
    store.upload_files([str(src / "x/one.txt")], relative_root=str(src), target_path="r", show_progress=False)
    assert store.download(str(tmp_path / "got2"), prefix="r", show_progress=False) == 1
    assert (tmp_path / "got2" / "r" / "x" / "one.txt").read_text() == "1"
    with pytest.raises(UserErrorException, match="is not under relative_root"):
        store.upload_files([str(src / "elsewhere/three.txt")], relative_root=str(src / "x"), show_progress=False)


def test_download_keeps_local_files_unless_overwrite(store, tmp_path):
    src = make_files(tmp_path / "src", {"f.txt": "remote"})
    store.upload(str(src), target_path="dl", show_progress=False)
    local = make_files(tmp_path / "local", {"dl/f.txt": "local edit"})
    assert store.download(str(local), prefix="dl", show_progress=False) == 0
    assert (local / "dl" / "f.txt").read_text() == "local edit"
    assert store.download(str(local), prefix="dl", overwrite=True, show_progress=False) == 1
    assert (local / "dl" / "f.txt").read_text() == "remote"


def test_blob_registration_keeps_the_secret_in_the_connection_only(workspace, azurite, blob_container):
    sas_store = Datastore.register_azure_blob_container(
        workspace,
        "sas_store",
        blob_container,
        account_name=azurite.account_name,
        sas_token=_sas(azurite, blob_container),
        protocol="http",
        endpoint=f"http://127.0.0.1:{azurite.port}",
    )
    record = workspace._deployment.get_connection(f"aml_datastore.{workspace.name}.sas_store")
    assert record.conn_type == "aml_blob_datastore"
    assert record.extra["credential"] == "sas_token" and record.password
    assert record.password not in json.dumps(dict(record.extra))
    assert sas_store.datastore_type == "AzureBlob" and sas_store.container_name == blob_container
    assert "sas_store" in workspace.datastores
    assert record.password not in repr(sas_store) and record.password not in repr(record)


def _sas(azurite, container: str) -> str:
    from datetime import UTC, datetime, timedelta

    from azure.storage.blob import ContainerSasPermissions, generate_container_sas

    return generate_container_sas(
        azurite.account_name,
        container,
        account_key=azurite.account_key,
        permission=ContainerSasPermissions(read=True, write=True, delete=True, list=True, add=True, create=True),
        expiry=datetime.now(UTC) + timedelta(hours=1),
    )


def test_blob_registration_checks_the_credential_and_never_echoes_it(workspace, azurite, blob_container):
    wrong_key = "d3Jvbmcga2V5IHdyb25nIGtleSB3cm9uZyBrZXkgd3Jvbmcga2V5IHdyb25nIGtleQ=="
    with pytest.raises(DatastoreError) as err:
        Datastore.register_azure_blob_container(
            workspace,
            "badkey",
            blob_container,
            account_name=azurite.account_name,
            account_key=wrong_key,
            protocol="http",
            endpoint=f"127.0.0.1:{azurite.port}",
        )
    assert "badkey" in str(err.value) and wrong_key not in str(err.value)
    assert "badkey" not in workspace.datastores
    with pytest.raises(UserErrorException, match="only one of sas_token, account_key or connection_string"):
        Datastore.register_azure_blob_container(
            workspace, "two", blob_container, account_name="a", account_key="k", sas_token="s"
        )


def test_re_registering_needs_overwrite_when_settings_differ(workspace, tmp_path):
    first = Datastore.register_local_folder(workspace, "rereg", tmp_path / "one")
    assert Datastore.register_local_folder(workspace, "rereg", tmp_path / "one") == first
    with pytest.raises(UserErrorException, match=r"already registered .* pass overwrite=True"):
        Datastore.register_local_folder(workspace, "rereg", tmp_path / "two")
    replaced = Datastore.register_local_folder(workspace, "rereg", tmp_path / "two", overwrite=True)
    assert Path(replaced.root) == (tmp_path / "two").resolve()
    replaced.unregister()
    with pytest.raises(DatastoreNotFoundError, match=r"No datastore named 'rereg'.*registered: .*workspaceblobstore"):
        Datastore(workspace, "rereg")


def test_default_datastore_can_be_changed(workspace, tmp_path):
    assert workspace.get_default_datastore().name == "workspaceblobstore"
    assert Datastore(workspace).name == "workspaceblobstore"
    Datastore.register_local_folder(workspace, "other_default", tmp_path / "o")
    try:
        workspace.set_default_datastore("other_default")
        assert Workspace.get("test-ws").get_default_datastore().name == "other_default"
    finally:
        workspace.set_default_datastore("workspaceblobstore")
    with pytest.raises(DatastoreNotFoundError):
        workspace.set_default_datastore("missing_store")


def test_config_file_round_trip_and_search(workspace, tmp_path, monkeypatch):
    written = workspace.write_config(tmp_path / "project")
    assert written == tmp_path / "project" / ".azureml" / "config.json"
    config = json.loads(written.read_text())
    assert config["workspace_name"] == "test-ws"
    assert config["airflow_home"] == str(workspace.airflow_home)
    nested = tmp_path / "project" / "src" / "steps"
    nested.mkdir(parents=True)
    monkeypatch.chdir(nested)  # v1 searches the current folder and its parents
    assert Workspace.from_config() == workspace
    assert Workspace.from_config(path=str(written)) == workspace
    with pytest.raises(WorkspaceException, match=r"No workspace config.json found"):
        Workspace.from_config(path=str(tmp_path / "nowhere"))


def test_workspace_create_and_lookup_rules(workspace, tmp_path):
    with pytest.raises(WorkspaceException, match=r"already exists .* exist_ok=True"):
        Workspace.create("test-ws", show_output=False)
    assert Workspace.create("test-ws", exist_ok=True, show_output=False) == workspace
    with pytest.raises(WorkspaceException, match="Workspace 'never-made' does not exist"):
        Workspace(workspace_name="never-made")
    other_home = tmp_path / "elsewhere"
    (other_home / ".azureml").mkdir(parents=True)
    (other_home / ".azureml" / "config.json").write_text(
        json.dumps({"workspace_name": "test-ws", "airflow_home": str(other_home)})
    )
    with pytest.raises(WorkspaceException, match="already uses AIRFLOW_HOME"):
        Workspace.from_config(path=str(other_home))
    with pytest.raises(UserErrorException, match="ARM resource ids are not supported"):
        Workspace.create(
            "arm-ws", storage_account="/subscriptions/x/resourceGroups/y/storageAccounts/z", show_output=False
        )
    with pytest.raises(WorkspaceException, match="does not exist"):
        Workspace(workspace_name="arm-ws")
    assert workspace._deployment.list_connections("aml_datastore.arm-ws.") == []


def test_compute_targets_are_looked_up_and_local_always_exists(workspace):
    from aml_airflow_provider.core.compute import ComputeTarget
    from aml_airflow_provider.exceptions import ComputeTargetException

    assert ComputeTarget(workspace, "local").name == "local"
    with pytest.raises(ComputeTargetException, match="compute target 'cpu-cluster' not found in workspace 'test-ws'"):
        ComputeTarget(workspace, "cpu-cluster")


def test_a_failed_create_leaves_no_workspace_behind(azurite):
    # The default container cannot be created: the account key is wrong.
    broken = azurite.connection_string.replace(azurite.account_key, "d3Jvbmcga2V5" * 7 + "d3Jvbmc=")
    with pytest.raises(DatastoreError):
        Workspace.create("half-made", storage_account=broken, show_output=False)
    with pytest.raises(WorkspaceException, match="does not exist"):
        Workspace(workspace_name="half-made")
    assert Workspace.create("half-made", exist_ok=True, show_output=False, storage_account=None).datastores


def test_account_urls_for_azure_and_emulators():
    from aml_airflow_provider.storage.blob import account_from_url, blob_account_url

    assert account_from_url("https://myacct.blob.core.windows.net") == "myacct"
    assert account_from_url("http://127.0.0.1:10000/devstoreaccount1") == "devstoreaccount1"
    assert blob_account_url("myacct", endpoint="https://myacct.blob.core.windows.net") == (
        "https://myacct.blob.core.windows.net"
    )
    assert blob_account_url("devstoreaccount1", endpoint="http://127.0.0.1:10000/devstoreaccount1") == (
        "http://127.0.0.1:10000/devstoreaccount1"
    )
