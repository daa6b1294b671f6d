"""The blob service goes away for several seconds while a step moves its data, and comes back.

The emulator (a real Azurite with its data on disk) is stopped while a step's input download, or
its output upload, is part-way through, stays down for :data:`DOWNTIME` seconds and is restarted on
the same port with the same data. The run must finish with exactly the right data, and nobody may
see a partial input or output meanwhile: the script only starts with its whole input, a downstream
step only reads a complete output, and the reuse index names the output only once all of it is up.
"""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path

import pytest
from azure.storage.blob import BlobServiceClient

from aml_airflow_provider.core import Experiment
from aml_airflow_provider.data.data_reference import DataReference
from aml_airflow_provider.pipeline.core import Pipeline, PipelineData
from aml_airflow_provider.pipeline.steps import PythonScriptStep
from aml_airflow_provider.runtime.reuse import REUSE_ROOT
from tests.faults.conftest import (
    DIGEST,
    complete_files,
    content,
    fault_during,
    sha256,
    step_work_dirs,
)
from tests.support.waiting import wait_until

pytestmark = pytest.mark.e2e

#: Seconds the blob service stays down ("several seconds").
DOWNTIME = 5.0
#: Files and their size: enough that a transfer takes a while here, so the outage hits its middle.
FILES = 600
SIZE = 32 * 1024

#: A step script: write FILES files of known content into its output.
PRODUCE = f"""
import os, random, sys
out = sys.argv[1]
os.makedirs(out, exist_ok=True)
for i in range({FILES}):
    with open(os.path.join(out, f"part-{{i:04d}}.bin"), "wb") as fh:
        fh.write(random.Random(f"produced-{{i}}").randbytes({SIZE}))
print("produced", {FILES}, "files")
"""


def digest_step(name: str, source, store, script_dir: Path) -> PythonScriptStep:
    """A DIGEST step reading ``source``: its output ``digested`` (on ``store``) holds the manifest."""
    (script_dir / "digest.py").write_text(DIGEST)
    digested = PipelineData("digested", datastore=store)
    return PythonScriptStep(
        "digest.py",
        name=name,
        arguments=[source, digested],
        inputs=[source],
        outputs=[digested],
        source_directory=script_dir,
        allow_reuse=False,
    )


def manifest_of(step_run, tmp_path: Path) -> dict[str, str]:
    """The manifest a :func:`digest_step` wrote to its output."""
    ref = step_run.get_output_data("digested")
    target = tmp_path / f"got-{step_run.name}"
    ref.download(str(target), overwrite=True, show_progress=False)
    return json.loads((target / ref.path_on_datastore / "manifest.json").read_text())


def test_outage_during_an_input_download_is_ridden_out(workspace, fault_azurite, fault_store, script_dir, tmp_path):
    data = tmp_path / "raw"
    data.mkdir()
    expected = {}
    for i in range(FILES):
        body = content("raw", i, SIZE)
        (data / f"f{i:04d}.bin").write_bytes(body)
        expected[f"f{i:04d}.bin"] = sha256(body)
    fault_store.upload(str(data), target_path="outage/raw", overwrite=True, show_progress=False)

    raw = DataReference(fault_store, "raw", "outage/raw", mode="download")
    step = digest_step("digest_during_outage", raw, fault_store, script_dir)
    started = time.time() - 1

    def outage(run_ended: threading.Event) -> dict[str, int]:
        def downloading() -> Path | None:
            for work in step_work_dirs("digest_during_outage", started):
                if complete_files(work / "inputs" / "raw") > 0:
                    return work / "inputs" / "raw"
            return None

        folder = wait_until("the input download started", downloading, give_up=run_ended)
        fault_azurite.stop()
        at_stop = complete_files(folder)
        time.sleep(DOWNTIME)
        before_restart = complete_files(folder)
        fault_azurite.start()
        return {"at_stop": at_stop, "before_restart": before_restart}

    with fault_during(outage, cleanup=fault_azurite.start) as fault:
        run = Experiment(workspace, "faults_outage_download").submit(Pipeline(workspace, [step]))
    seen = fault.result()

    # The outage hit the middle of the download: part of the input was there when the service
    # stopped, and the rest had still not arrived when it came back.
    assert 0 < seen["at_stop"] < FILES and seen["before_restart"] < FILES, seen
    assert run.wait_for_completion(show_output=False) == "Finished"
    # The script saw every input file, each complete and intact.
    assert manifest_of(run.find_step_run("digest_during_outage")[0], tmp_path) == expected


def test_outage_during_an_output_upload_is_ridden_out(workspace, fault_azurite, fault_store, script_dir, tmp_path):
    (script_dir / "produce.py").write_text(PRODUCE)
    parts = PipelineData("parts", datastore=fault_store)
    produce = PythonScriptStep(
        "produce.py",
        name="produce_during_outage",
        arguments=[parts],
        outputs=[parts],
        source_directory=script_dir,
        allow_reuse=False,
    )
    consume = digest_step("consume_after_outage", parts, fault_store, script_dir)
    experiment = Experiment(workspace, "faults_outage_upload")
    index = Path(workspace.get_default_datastore().root) / REUSE_ROOT / "steps" / experiment.dag_id

    def uploaded() -> list[str]:
        """The blobs of the producer's output, as any client of the container sees them."""
        container = BlobServiceClient.from_connection_string(fault_azurite.connection_string).get_container_client(
            fault_store.container_name
        )
        with container:
            return [
                b.name
                for b in container.list_blobs(name_starts_with="azureml/")
                if "/produce_during_outage/parts/" in b.name
            ]

    started = time.time() - 1

    def outage(run_ended: threading.Event) -> dict[str, object]:
        seen: dict[str, object] = {
            "up_at_stop": len(wait_until("the output upload started", uploaded, interval=0.005, give_up=run_ended))
        }
        fault_azurite.stop()
        seen["indexed_during_outage"] = sorted(p.name for p in index.glob("*"))
        seen["consumer_started"] = bool(step_work_dirs("consume_after_outage", started))
        time.sleep(DOWNTIME)
        fault_azurite.start()
        seen["up_after_restart"] = len(uploaded())
        return seen

    with fault_during(outage, cleanup=fault_azurite.start) as fault:
        run = experiment.submit(Pipeline(workspace, [produce, consume]))
    seen = fault.result()

    # The outage hit the middle of the upload (part of the output was up when the service stopped,
    # and it was still incomplete when it came back), and while it lasted the output was nowhere
    # recorded as done: no reuse-index entry for the step, and its consumer had not started.
    assert seen["up_at_stop"] > 0 and seen["up_after_restart"] < FILES, seen
    assert seen["indexed_during_outage"] == [] and not seen["consumer_started"], seen
    assert run.wait_for_completion(show_output=False) == "Finished"
    expected = {f"part-{i:04d}.bin": sha256(content("produced", i, SIZE)) for i in range(FILES)}
    # The consumer read the whole output, every file intact ...
    assert manifest_of(run.find_step_run("consume_after_outage")[0], tmp_path) == expected
    # ... and the output holds exactly those files: nothing of the interrupted upload is left over.
    ref = run.find_step_run("produce_during_outage")[0].get_output_data("parts")
    target = tmp_path / "parts"
    assert ref.download(str(target), show_progress=False) == FILES
    got = {p.name: sha256(p.read_bytes()) for p in (target / ref.path_on_datastore).iterdir()}
    assert got == expected
    assert sorted(p.name for p in index.glob("*")) == ["consume_after_outage.json", "produce_during_outage.json"]
