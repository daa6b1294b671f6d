"""A local-folder datastore whose disk fills up: a real 8 MiB tmpfs mounted for the test.

Whatever runs out of space (an upload, a step writing its output, the reuse index being written),
the error says which datastore and path and that its disk is full; no partial file or output is
ever visible; the reuse index stays readable and right, so once space is freed the runs work and
reuse nothing of what failed.
"""

from __future__ import annotations

import json
import os
import random
from pathlib import Path

import pytest

from aml_airflow_provider.core import Datastore, Experiment
from aml_airflow_provider.exceptions import ActivityFailedException, DatastoreError
from aml_airflow_provider.pipeline.core import Pipeline, PipelineData
from aml_airflow_provider.pipeline.steps import PythonScriptStep
from aml_airflow_provider.runtime.reuse import REUSE_ROOT
from aml_airflow_provider.storage.local import STAGING_DIR, TEMP_PREFIX
from tests.faults.conftest import sha256

pytestmark = pytest.mark.e2e

MiB = 1024 * 1024

#: Writes ``size`` bytes of known content to its output. With ``--fill-once FLAG FILLER``, and while
#: FLAG exists, it then fills the disk of FILLER (as another tenant of a shared disk would) and
#: removes FLAG: the next run of the very same step does not.
WRITER = """
import os, random, sys
out, size = sys.argv[1], int(sys.argv[2])
os.makedirs(out, exist_ok=True)
with open(os.path.join(out, "data.bin"), "wb") as fh:
    data = random.Random("payload").randbytes(size)
    for start in range(0, size, 256 * 1024):
        fh.write(data[start:start + 256 * 1024])
        fh.flush()
if "--fill-once" in sys.argv:
    flag, filler = sys.argv[sys.argv.index("--fill-once") + 1:][:2]
    if os.path.exists(flag):
        os.remove(flag)
        with open(filler, "wb") as fh:
            try:
                while True:
                    fh.write(b"\\0" * 65536)
                    fh.flush()
            except OSError as exc:
                print("the disk is full now:", exc)
print("wrote", size, "bytes")
"""


def payload(size: int) -> bytes:
    return random.Random("payload").randbytes(size)


def hidden_leftovers(root: Path) -> list[str]:
    """Staging folders with content and temp files anywhere under ``root`` (which nobody should see)."""
    found = []
    for folder, _, files in os.walk(root):
        rel = Path(folder).relative_to(root)
        found += [str(rel / f) for f in files if f.startswith(TEMP_PREFIX)]
        if rel.parts[:1] == (STAGING_DIR,):
            found += [str(rel / f) for f in files]
    return found


def runs_whole_after_freeing(filler: Path, experiment, pipeline, root: Path, size: int):
    """Free the disk and submit again: the step runs (nothing of the failed run is reused) and its output
    is whole. The run and the output's reference."""
    filler.unlink()
    ok = experiment.submit(pipeline())
    assert ok.wait_for_completion(show_output=False) == "Finished"
    step = ok.find_step_run("writer")[0]
    assert not step.is_reused
    ref = step.get_output_data("out")
    assert sha256((root / ref.path_on_datastore / "data.bin").read_bytes()) == sha256(payload(size))
    return ok, ref


def index_entries(root: Path) -> dict[str, dict]:
    """Every reuse-index entry on the datastore, parsed (a corrupted one fails the JSON parse)."""
    index = root / REUSE_ROOT
    return {str(p.relative_to(index)): json.loads(p.read_text()) for p in sorted(index.rglob("*.json"))}


@pytest.fixture
def small_store(workspace, tmpfs):
    """A local-folder datastore on the 8 MiB tmpfs (its root is a folder on it; the rest is for fillers)."""
    store = Datastore.register_local_folder(workspace, "smalldisk", tmpfs.path / "store", overwrite=True)
    yield store
    store.unregister()


def test_upload_files_onto_a_full_datastore_fails_clearly_and_keeps_every_file_whole(small_store, tmpfs, tmp_path):
    files = []
    for i in range(5):
        path = tmp_path / "src" / f"part-{i}.bin"
        path.parent.mkdir(exist_ok=True)
        path.write_bytes(random.Random(i).randbytes(3 * MiB))
        files.append(path)
    root = Path(small_store.root)
    free_before = tmpfs.free()

    with pytest.raises(DatastoreError) as failure:
        small_store.upload_files([str(f) for f in files], target_path="in", show_progress=False)

    message = str(failure.value)
    assert "datastore 'smalldisk'" in message and "path 'in/part-" in message, message
    assert "disk is full" in message and "No space left on device" in message, message
    # What did arrive is whole; nothing half-written is listed, left on the disk or holding space.
    landed = sorted((root / "in").iterdir()) if (root / "in").exists() else []
    assert len(landed) < len(files)
    for path in landed:
        assert path.read_bytes() == (tmp_path / "src" / path.name).read_bytes()
    assert hidden_leftovers(root) == []
    assert tmpfs.free() == free_before - sum(p.stat().st_size for p in landed)

    # The datastore is not left broken: with room again, an upload that fits works.
    for path in landed:
        path.unlink()
    small_store.upload_files([str(f) for f in files[:2]], target_path="in", show_progress=False)
    assert sorted(p.name for p in (root / "in").iterdir()) == ["part-0.bin", "part-1.bin"]


def test_a_step_output_bigger_than_the_free_space(workspace, small_store, tmpfs, script_dir, capsys):
    (script_dir / "writer.py").write_text(WRITER)
    root = Path(small_store.root)
    experiment = Experiment(workspace, "faults_full_output")

    def pipeline() -> Pipeline:
        out = PipelineData("out", datastore=small_store)
        step = PythonScriptStep(
            "writer.py", name="writer", arguments=[out, 4 * MiB], outputs=[out], source_directory=script_dir
        )
        return Pipeline(workspace, [step], default_datastore=small_store)

    # Something else took the disk: 2 MiB are left for a 4 MiB output.
    filler = tmpfs.fill(leave=2 * MiB)
    capsys.readouterr()
    failed = experiment.submit(pipeline())
    with pytest.raises(ActivityFailedException, match="failed steps: writer"):
        failed.wait_for_completion(show_output=False)

    log = capsys.readouterr().out
    assert "No space left on device" in log
    assert "Output 'out' is written on datastore 'smalldisk'" in log and "its disk is full" in log, log[-3000:]
    # Nothing of the output is visible, nothing is left in the staging area, the space is back,
    # and the reuse index has no entry for the failed run.
    assert failed.find_step_run("writer")[0].get_outputs() == {}
    assert not list(root.glob(f"azureml/{experiment.dag_id}/*/writer/out"))
    assert hidden_leftovers(root) == []
    assert tmpfs.free() > 1.5 * MiB  # the partly written output was removed
    assert not any(e["step_run"]["run_id"] == failed.id for e in index_entries(root).values())

    # Room again: the same step runs (nothing of the failed run is reused) and its output is whole.
    runs_whole_after_freeing(filler, experiment, pipeline, root, 4 * MiB)


def test_the_disk_filling_up_while_the_reuse_index_is_written(workspace, small_store, tmpfs, script_dir, capsys):
    (script_dir / "writer.py").write_text(WRITER)
    root = Path(small_store.root)
    flag = tmpfs.path / "fill-once"
    flag.write_text("fill the disk after writing the output, once")
    filler = tmpfs.path / "filler.bin"
    experiment = Experiment(workspace, "faults_full_index")

    def pipeline() -> Pipeline:
        out = PipelineData("out", datastore=small_store)
        step = PythonScriptStep(
            "writer.py",
            name="writer",
            arguments=[out, MiB, "--fill-once", str(flag), str(filler)],
            outputs=[out],
            source_directory=script_dir,
        )
        return Pipeline(workspace, [step], default_datastore=small_store)

    capsys.readouterr()
    failed = experiment.submit(pipeline())
    with pytest.raises(ActivityFailedException, match="failed steps: writer"):
        failed.wait_for_completion(show_output=False)

    log = capsys.readouterr().out
    assert "the disk is full now" in log  # the script did fill it
    assert f"datastore 'smalldisk' (local folder {root}) path '{REUSE_ROOT}/fingerprints/" in log, log[-3000:]
    assert "its disk is full" in log
    # The index is whole: no half-written entry, no temp file, and nothing names the failed run.
    entries = index_entries(root)
    assert not any(e["step_run"]["run_id"] == failed.id for e in entries.values())
    assert hidden_leftovers(root) == []
    assert failed.find_step_run("writer")[0].get_outputs() == {}

    # Room again: the identical step runs (the output of the failed run, never recorded, is not
    # reused), records itself, and the next run reuses that.
    ok, ref = runs_whole_after_freeing(filler, experiment, pipeline, root, MiB)
    again = experiment.submit(pipeline())
    assert again.wait_for_completion(show_output=False) == "Finished"
    assert again.find_step_run("writer")[0].reused_run_id == f"{ok.id}.writer"
    assert again.find_step_run("writer")[0].get_output_data("out").path_on_datastore == ref.path_on_datastore
