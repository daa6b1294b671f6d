"""Step reuse, source snapshots and run tracking, through the embedded Airflow.

Each test builds its own experiment, so reuse decisions only depend on what the test does. Step
logs (where reuse decisions are explained) are what Airflow prints for a task, captured here.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from aml_airflow_provider import xcom
from aml_airflow_provider.core import Datastore, Experiment
from aml_airflow_provider.data.data_reference import DataReference
from aml_airflow_provider.pipeline.core import Pipeline, PipelineData
from aml_airflow_provider.pipeline.steps import PythonScriptStep

pytestmark = pytest.mark.e2e

COPY = """
import os, sys, time
from aml_airflow_provider.core import Run
src, out = sys.argv[1], sys.argv[2]
os.makedirs(out, exist_ok=True)
text = open(src).read() if os.path.isfile(src) else open(os.path.join(src, sorted(os.listdir(src))[0])).read()
open(os.path.join(out, "data.txt"), "w").write(text + " | " + os.path.basename(__file__))
run = Run.get_context()
run.log("chars", len(text))
run.log("chars", len(text) + 1)
run.log_row("table", x=1, y=2)
run.tag("copied", "yes")
run.parent.log("pipeline_total", 42)
os.makedirs("outputs", exist_ok=True)
open("outputs/note.txt", "w").write("an artifact")
print("copied", len(text), "characters")
"""


def write_scripts(folder: Path) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "duplicate.py").write_text(COPY)
    (folder / "helper.txt").write_text("ignored by .amlignore")
    (folder / ".amlignore").write_text("helper.txt\n*.tmp\n")


def two_branches(workspace, store, src: Path) -> Pipeline:
    """a: blob x -> a_out -> b: b_out; c: blob y -> c_out (independent of a and b)."""
    x = DataReference(store, "x", "reuse-in/x.txt")
    y = DataReference(store, "y", "reuse-in/y.txt")
    a_out, b_out, c_out = PipelineData("a_out"), PipelineData("b_out"), PipelineData("c_out")
    a = PythonScriptStep(
        "duplicate.py", name="a", arguments=[x, a_out], inputs=[x], outputs=[a_out], source_directory=src
    )
    b = PythonScriptStep(
        "duplicate.py", name="b", arguments=[a_out, b_out], inputs=[a_out], outputs=[b_out], source_directory=src
    )
    c = PythonScriptStep(
        "duplicate.py", name="c", arguments=[y, c_out], inputs=[y], outputs=[c_out], source_directory=src
    )
    return Pipeline(workspace, [a, b, c], default_datastore=store)


def upload(store, tmp_path: Path, name: str, text: str) -> None:
    local = tmp_path / "upload" / name
    local.parent.mkdir(parents=True, exist_ok=True)
    local.write_text(text)
    store.upload_files([str(local)], target_path="reuse-in", overwrite=True, show_progress=False)


def reused(run) -> dict[str, bool]:
    return {s.name: s.is_reused for s in run.get_steps()}


def outputs(run) -> dict[str, str]:
    return {s.name: uri for s in run.get_steps() for uri in s._output_uris().values()}


def test_reuse_follows_data_code_and_ignore_files(workspace, blob_datastore, tmp_path, capsys):
    store = blob_datastore
    src = tmp_path / "src"
    write_scripts(src)
    upload(store, tmp_path, "x.txt", "first x")
    upload(store, tmp_path, "y.txt", "first y")
    experiment = Experiment(workspace, "reuse_rules")

    first = experiment.submit(two_branches(workspace, store, src))
    assert reused(first) == {"a": False, "b": False, "c": False}
    assert "no earlier run of this step was recorded" in capsys.readouterr().out

    # Nothing changed: every step is reused, its outputs are the same locations.
    second = experiment.submit(two_branches(workspace, store, src))
    assert reused(second) == {"a": True, "b": True, "c": True}
    assert outputs(second) == outputs(first)
    step_a = second.find_step_run("a")[0]
    assert step_a.reused_run_id == f"{first.id}.a"
    assert step_a.get_details()["properties"]["azureml.reusedrunid"] == f"{first.id}.a"
    assert f"StepRun 'a': Finished (reused step run {first.id}.a)" in second.summary()
    log = capsys.readouterr().out
    assert re.search(rf"reused step run {re.escape(first.id)}\.a \(fingerprint [0-9a-f]{{64}}\)", log)

    # One input blob changes: exactly its downstream steps rerun, and the log says why.
    upload(store, tmp_path, "x.txt", "second x")
    third = experiment.submit(two_branches(workspace, store, src))
    assert reused(third) == {"a": False, "b": False, "c": True}
    log = capsys.readouterr().out
    assert re.search(r"Step 'a' runs \(fingerprint \w+\): input 'x' changed \(etag \S+→\S+\)", log)
    assert re.search(r"Step 'b' runs \(fingerprint \w+\): input 'a_out' changed \(produced by a step run", log)
    back = tmp_path / "back"
    ref = third.find_step_run("b")[0].get_output_data("b_out")
    ref.download(str(back), show_progress=False)
    assert (back / ref.path_on_datastore / "data.txt").read_text().startswith("second x")

    # A file the .amlignore ignores changes: nothing reruns.
    (src / "helper.txt").write_text("changed, but ignored")
    (src / "scratch.tmp").write_text("ignored too")
    fourth = experiment.submit(two_branches(workspace, store, src))
    assert reused(fourth) == {"a": True, "b": True, "c": True}

    # The script changes: every step running it reruns, and the log names the file.
    (src / "duplicate.py").write_text(COPY + "\n# a comment changes the snapshot\n")
    fifth = experiment.submit(two_branches(workspace, store, src))
    assert reused(fifth) == {"a": False, "b": False, "c": False}
    assert "script snapshot changed: duplicate.py" in capsys.readouterr().out

    # regenerate_outputs forces every step to run; allow_reuse=False forces one.
    assert reused(experiment.submit(two_branches(workspace, store, src), regenerate_outputs=True)) == {
        "a": False,
        "b": False,
        "c": False,
    }


def test_allow_reuse_false_always_runs(workspace, tmp_path):
    src = tmp_path / "src"
    write_scripts(src)
    store = Datastore(workspace, "workspaceblobstore")
    upload(store, tmp_path, "x.txt", "x")
    x = DataReference(store, "x", "reuse-in/x.txt")

    def build():
        out = PipelineData("out")
        return Pipeline(
            workspace,
            [
                PythonScriptStep(
                    "duplicate.py",
                    name="never",
                    arguments=[x, out],
                    inputs=[x],
                    outputs=[out],
                    source_directory=src,
                    allow_reuse=False,
                )
            ],
        )

    experiment = Experiment(workspace, "reuse_never")
    experiment.submit(build())
    assert reused(experiment.submit(build())) == {"never": False}


def test_metrics_tags_files_and_logs_come_back(workspace, tmp_path):
    src = tmp_path / "src"
    write_scripts(src)
    store = Datastore(workspace, "workspaceblobstore")
    upload(store, tmp_path, "x.txt", "hello")
    upload(store, tmp_path, "y.txt", "world!")
    run = Experiment(workspace, "tracking").submit(two_branches(workspace, store, src))

    metrics = run.get_metrics()
    assert metrics["a"] == {"chars": [5, 6], "table": {"x": [1], "y": [2]}}
    assert metrics["c"]["chars"] == [6, 7]
    assert run.get_pipeline_metrics() == {"pipeline_total": [42, 42, 42]}
    step = run.find_step_run("a")[0]
    assert step.get_tags() == {"copied": "yes"}
    assert sorted(step.get_file_names()) == ["azureml-logs/70_driver_log.txt", "outputs/note.txt"]
    target = step.download_file("outputs/note.txt", str(tmp_path))
    assert Path(target).read_text() == "an artifact"
    job_log = step.get_job_log()
    assert "Preparing to call script [ duplicate.py ] with arguments: ['$AZUREML_DATAREFERENCE_x'" in job_log
    assert "After variable expansion, calling script [ duplicate.py ]" in job_log
    assert "copied 5 characters" in job_log
    assert step.get_details_with_logs()["logFiles"]["azureml-logs/70_driver_log.txt"] == job_log
    # The run can be traced to the exact code it ran, even after the folder changes.
    (src / "duplicate.py").write_text("# edited after the run\n")
    code = Path(step.restore_snapshot(tmp_path / "code"))
    assert (code / "duplicate.py").read_text() == COPY
    assert sorted(p.name for p in code.iterdir()) == [".amlignore", "duplicate.py"]  # helper.txt was ignored
    assert len(step.snapshot_id) == 64

    # The UI's extra links were stored by Airflow when the task finished.
    from aml_airflow_provider.operators.links import StepLogsLink, StepOutputsLink

    xcoms = workspace._deployment.xcoms("tracking", run.id, "a")
    assert xcoms[StepOutputsLink().xcom_key] == xcoms[xcom.STEP_RUN][xcom.OUTPUTS_URL]
    assert xcoms[StepOutputsLink().xcom_key].startswith("file://") and xcoms[StepOutputsLink().xcom_key].endswith("/a")
    assert xcoms[StepLogsLink().xcom_key].endswith("/a/step-run/files/azureml-logs")


def test_a_step_killed_mid_write_and_retried_leaves_no_partial_output(workspace, tmp_path):
    src = tmp_path / "src"
    src.mkdir()
    marker = tmp_path / "first-attempt-done"
    (src / "write.py").write_text(f"""
import os, signal, sys
out = sys.argv[1]
os.makedirs(out, exist_ok=True)
with open(os.path.join(out, "part-1.txt"), "w") as fh:
    fh.write("half")
if not os.path.exists({str(marker)!r}):
    open({str(marker)!r}, "w").close()
    os.kill(os.getpid(), signal.SIGKILL)  # dies mid-write on the first attempt
with open(os.path.join(out, "part-2.txt"), "w") as fh:
    fh.write("complete")
""")
    (src / "read.py").write_text(
        "import json, os, sys\nfiles = sorted(os.listdir(sys.argv[1]))\nos.makedirs(sys.argv[2], exist_ok=True)\n"
        "json.dump(files, open(os.path.join(sys.argv[2], 'seen.json'), 'w'))\n"
    )
    data, seen = PipelineData("data"), PipelineData("seen")
    writer = PythonScriptStep("write.py", name="writer", arguments=[data], outputs=[data], source_directory=src)
    reader = PythonScriptStep(
        "read.py", name="reader", arguments=[data, seen], inputs=[data], outputs=[seen], source_directory=src
    )
    pipeline = Pipeline(workspace, [writer, reader])

    from aml_airflow_provider.dagfile import load_dag_file, write_dag_file

    dag_file = write_dag_file(
        workspace._deployment.dags_folder,
        "killed_and_retried",
        pipeline.spec,
        title="t",
        dag_kwargs={"default_args": {"retries": 1, "retry_delay": 0}},
    )
    dag = load_dag_file(dag_file)
    assert dag.default_args["retries"] == 1
    dag_run = dag.test()

    assert marker.exists(), "the first attempt ran and was killed"
    assert str(dag_run.state).endswith("success")
    tis = {t.task_id: t for t in workspace._deployment.task_instances("killed_and_retried", dag_run.run_id)}
    assert tis["writer"].try_number == 2
    reader_out = workspace._deployment.xcoms("killed_and_retried", dag_run.run_id, "reader")["seen"]
    root = Path(Datastore(workspace, "workspaceblobstore").root)
    location = reader_out.split("/paths/", 1)[1]
    assert json.loads((root / location / "seen.json").read_text()) == ["part-1.txt", "part-2.txt"]
    assert not list((root / ".aml-staging").glob("*"))
    # The reuse index names the attempt that succeeded, with its complete output.
    from aml_airflow_provider.runtime.reuse import ReuseIndex

    entry = ReuseIndex(Datastore(workspace, "workspaceblobstore")._backend).latest("killed_and_retried", "writer")
    assert entry["step_run"]["run_id"] == dag_run.run_id and entry["outputs"]["data"]["files"] == 2
