"""Symbolic links in a source directory never pull files from outside it into a step's snapshot.

SDK v1 followed every link when it snapshotted a folder (and looped forever on a link to a parent).
Here a link to a file or folder inside the source directory is kept (as a copy of what it points at);
a link that leads outside, nowhere, or back into a folder it is in is left out with a warning naming
it. A real step lists what it sees in its working directory, for a snapshot taken when the pipeline
is submitted and for one taken on the worker when the task runs.
"""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path

import pytest

from aml_airflow_provider.core import Datastore, Experiment
from aml_airflow_provider.operators.python_script_step import PythonScriptStepOperator
from aml_airflow_provider.pipeline.core import Pipeline, PipelineData
from aml_airflow_provider.pipeline.steps import PythonScriptStep
from aml_airflow_provider.uris import DatastoreUri
from tests.support.task_instance import FakeTI

pytestmark = pytest.mark.e2e

LIST = """
import json, os, sys
out = sys.argv[sys.argv.index("--out") + 1]
seen = {}
for folder, dirs, files in os.walk("."):
    for name in files:
        path = os.path.join(folder, name)
        seen[os.path.relpath(path, ".")] = "link" if os.path.islink(path) else open(path, errors="replace").read()
os.makedirs(out, exist_ok=True)
json.dump(seen, open(os.path.join(out, "seen.json"), "w"))
"""
OUTSIDE = "OUTSIDE-THE-SOURCE-DIRECTORY: a worker's private file"
#: What the step must see: its own files, and the links that point inside, as copies.
EXPECTED = {
    "list.py": LIST,
    "inside.txt": "inside",
    "sub/helper.py": "X = 1\n",
    "same_file": "inside",
    "same_dir/helper.py": "X = 1\n",
}
#: The links left out, each named in a warning.
LEFT_OUT = ("secret_file", "secret_dir", "loop_to_root", "sub/loop_to_parent", "dangling")


@pytest.fixture
def source(tmp_path) -> Path:
    outside = tmp_path / "outside"
    (outside / "dir").mkdir(parents=True)
    (outside / "secret.txt").write_text(OUTSIDE)
    (outside / "dir" / "more.txt").write_text(OUTSIDE)
    src = tmp_path / "src"
    (src / "sub").mkdir(parents=True)
    (src / "list.py").write_text(LIST)
    (src / "inside.txt").write_text("inside")
    (src / "sub" / "helper.py").write_text("X = 1\n")
    os.symlink("inside.txt", src / "same_file")
    os.symlink("sub", src / "same_dir")
    os.symlink(outside / "secret.txt", src / "secret_file")
    os.symlink(outside / "dir", src / "secret_dir")
    os.symlink(".", src / "loop_to_root")
    os.symlink("..", src / "sub" / "loop_to_parent")
    os.symlink(tmp_path / "no-such-file", src / "dangling")
    return src


def warned_about(caplog) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name == "aml_airflow_provider.runtime.snapshot"]


def assert_left_out_with_warnings(caplog, src: Path) -> None:
    messages = warned_about(caplog)
    for link in LEFT_OUT:
        assert any(f"leaving out {link}," in m and str(src) in m for m in messages), (link, messages)
    assert any("secret_file, a symbolic link to" in m and "outside the source directory" in m for m in messages)
    assert any("loop_to_root, a symbolic link to" in m and "(a loop)" in m for m in messages)


def no_outside_content_under(root: Path) -> list[Path]:
    return [p for p in root.rglob("*") if p.is_file() and not p.is_symlink() and OUTSIDE.encode() in p.read_bytes()]


def test_snapshot_taken_at_submit_keeps_inside_links_and_leaves_out_the_rest(workspace, source, tmp_path, caplog):
    caplog.set_level(logging.WARNING, logger="aml_airflow_provider.runtime.snapshot")
    out = PipelineData("seen")
    step = PythonScriptStep(
        "list.py", name="list", arguments=["--out", out], outputs=[out], source_directory=source, allow_reuse=False
    )
    run = Experiment(workspace, "snapshot_symlinks").submit(Pipeline(workspace, [step]))
    assert run.wait_for_completion(show_output=False) == "Finished"

    (step_run,) = run.find_step_run("list")
    ref = step_run.get_output_data("seen")
    ref.download(str(tmp_path / "download"), show_progress=False)
    seen = json.loads((tmp_path / "download" / ref.path_on_datastore / "seen.json").read_text())
    assert seen == EXPECTED
    assert_left_out_with_warnings(caplog, source)
    # Nor is the outside file anywhere on the datastore (snapshots, outputs, step-run records).
    assert no_outside_content_under(Path(Datastore(workspace, "workspaceblobstore").root)) == []
    # The restored snapshot is exactly what the step saw.
    restored = Path(step_run.restore_snapshot(str(tmp_path / "restored")))
    assert {p.relative_to(restored).as_posix() for p in restored.rglob("*") if p.is_file()} == set(EXPECTED)


def test_snapshot_taken_by_the_task_on_the_worker_leaves_out_outside_links(
    workspace, connections, blob_datastore, source, caplog
):
    caplog.set_level(logging.WARNING, logger="aml_airflow_provider.runtime.snapshot")
    # A hand-written DAG's task: no snapshot pinned at submit, so the worker takes it when the task runs,
    # on the blob datastore here.
    op = PythonScriptStepOperator(
        task_id="t1",
        workspace="test-ws",
        script_name="list.py",
        source_directory=str(source),
        arguments=["--out", "$AZUREML_DATAREFERENCE_seen"],
        outputs=[{"name": "seen", "datastore": blob_datastore.name}],
        allow_reuse=False,
        default_datastore=blob_datastore.name,
    )
    ti = FakeTI()
    op.execute({"ti": ti, "params": {}})

    location = DatastoreUri.parse(ti.pushed["seen"])
    text = blob_datastore._backend.container_client.download_blob(f"{location.path}/seen.json").readall()
    assert json.loads(text) == EXPECTED
    assert_left_out_with_warnings(caplog, source)
    stored = [
        blob.name
        for blob in blob_datastore._backend.container_client.list_blobs(name_starts_with="azureml/snapshots/files/")
        if OUTSIDE.encode() in blob_datastore._backend.container_client.download_blob(blob.name).readall()
    ]
    assert stored == []
