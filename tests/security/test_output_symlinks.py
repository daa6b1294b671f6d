"""Symbolic links a script leaves in its output never carry the worker's files out.

Publishing an output reads through links: a script (or a container, whose links name the worker's
paths) that writes ``out/key -> ~/.ssh/id_rsa`` would otherwise upload that file to the datastore.
A link out of the output (or to nowhere) fails the step, naming the output and the link, before any
output is published; a link within the output is published as what it points at.
"""

from __future__ import annotations

import pytest

from aml_airflow_provider.exceptions import UserErrorException
from aml_airflow_provider.operators.python_script_step import PythonScriptStepOperator
from aml_airflow_provider.uris import DatastoreUri
from tests.support.task_instance import FakeTI

SECRET = "worker-private-key-4d1f"

SCRIPT = """
import os, sys
out, kept, target = sys.argv[1], sys.argv[2], sys.argv[3]
for folder in (out, kept):
    os.makedirs(os.path.join(folder, "sub"), exist_ok=True)
    with open(os.path.join(folder, "data.txt"), "w") as fh:
        fh.write("written by the step")
    os.symlink(os.path.join("..", "data.txt"), os.path.join(folder, "sub", "alias.txt"))  # within: fine
if target:
    os.symlink(target, os.path.join(out, "sub", "leak"))
"""


def _operator(script_dir, datastore: str, target: str) -> PythonScriptStepOperator:
    return PythonScriptStepOperator(
        task_id="links",
        workspace="test-ws",
        script_name="links.py",
        source_directory=str(script_dir),
        arguments=["$AZUREML_DATAREFERENCE_out", "$AZUREML_DATAREFERENCE_kept", target],
        outputs=[{"name": "out", "datastore": datastore}, {"name": "kept", "datastore": datastore}],
        allow_reuse=False,
        default_datastore=datastore,
    )


@pytest.fixture(params=["local", "blob"])
def datastore(request, workspace):
    """The workspace's local-folder datastore, or a blob datastore on Azurite."""
    if request.param == "local":
        return workspace.get_default_datastore()
    return request.getfixturevalue("blob_datastore")


def _read_output(datastore, ti: FakeTI, output: str, name: str) -> bytes:
    """The bytes of the file ``name`` in the output ``output`` the task pushed, as a consumer reads them."""
    path = f"{DatastoreUri.parse(ti.pushed[output]).path}/{name}"
    backend = datastore._backend
    local = backend.local_path(path)
    if local is not None:
        return local.read_bytes()
    return backend.container_client.download_blob(path).readall()


@pytest.mark.parametrize("kind", ["file", "folder", "dangling"])
def test_a_link_out_of_the_output_fails_the_step_and_publishes_nothing(
    kind, datastore, connections, script_dir, tmp_path
):
    outside = tmp_path / "worker-home"
    (outside / ".ssh").mkdir(parents=True)
    (outside / ".ssh" / "id_rsa").write_text(SECRET)
    target = {
        "file": outside / ".ssh" / "id_rsa",
        "folder": outside / ".ssh",
        "dangling": outside / "gone",
    }[kind]
    (script_dir / "links.py").write_text(SCRIPT)
    ti = FakeTI()

    with pytest.raises(UserErrorException) as refused:
        _operator(script_dir, datastore.name, str(target)).execute({"ti": ti, "params": {}})

    message = str(refused.value)
    assert "output 'out'" in message and "'sub/leak'" in message and str(target) in message
    assert SECRET not in message
    # Neither output was handed on (the good one neither: the step failed), and nothing reached the datastore.
    assert not {"out", "kept"} & set(ti.pushed)
    run_folder = f"azureml/{ti.dag_id}"
    stored = datastore._backend.list_files(run_folder)
    assert [f.path for f in stored if "/links/out" in f.path or "/links/kept" in f.path] == []


def test_links_within_the_output_are_published_as_their_content(datastore, connections, script_dir):
    (script_dir / "links.py").write_text(SCRIPT)
    ti = FakeTI()

    _operator(script_dir, datastore.name, "").execute({"ti": ti, "params": {}})

    for name in ("out", "kept"):
        assert _read_output(datastore, ti, name, "data.txt") == b"written by the step"
        # A local datastore keeps the (relative) link, which still resolves in the published folder; a blob
        # datastore holds the bytes it pointed at.
        assert _read_output(datastore, ti, name, "sub/alias.txt") == b"written by the step"
