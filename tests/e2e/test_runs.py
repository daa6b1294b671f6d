"""Pipeline runs through the embedded Airflow (``Experiment.submit`` runs the DAG with ``DAG.test``).

These run in the test process, against the session's AIRFLOW_HOME, and check what a v1 user looks
at: statuses, step runs, outputs and their content.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from aml_airflow_provider.core import Datastore, Experiment
from aml_airflow_provider.data.data_reference import DataReference
from aml_airflow_provider.data.datapath import DataPath, DataPathComputeBinding
from aml_airflow_provider.exceptions import ActivityFailedException, PipelineParameterError
from aml_airflow_provider.pipeline.core import Pipeline, PipelineData, PipelineParameter, StepSequence
from aml_airflow_provider.pipeline.steps import PythonScriptStep

pytestmark = pytest.mark.e2e

WRITE = """
import json, os, sys, time
args = dict(zip(sys.argv[1::2], sys.argv[2::2]))
out = args.pop("--out")
os.makedirs(out, exist_ok=True)
inputs = {}
for key in [k for k in args if k.startswith("--in")]:
    path = args.pop(key)
    if os.path.isdir(path):
        inputs[key] = {f: open(os.path.join(path, f)).read() for f in sorted(os.listdir(path))}
    else:
        inputs[key] = open(path).read()
with open(os.path.join(out, "result.json"), "w") as fh:
    json.dump({"args": args, "inputs": inputs, "t": time.time()}, fh)
"""
FAIL = "import sys\nprint('about to fail', file=sys.stderr)\nsys.exit(2)\n"


@pytest.fixture
def scripts(script_dir: Path) -> Path:
    (script_dir / "write.py").write_text(WRITE)
    (script_dir / "fail.py").write_text(FAIL)
    return script_dir


def result_of(step_run, output: str, tmp_path: Path) -> dict:
    ref = step_run.get_output_data(output)
    target = tmp_path / f"download-{step_run.name}-{output}"
    assert ref.download(str(target), show_progress=False) == 1
    return json.loads((target / ref.path_on_datastore / "result.json").read_text())


def test_parameters_datapath_and_ordering_through_airflow(workspace, scripts, tmp_path):
    store = Datastore(workspace, "workspaceblobstore")
    files = Datastore(workspace, "workspacefilestore")
    data = tmp_path / "data"
    data.mkdir()
    (data / "a.csv").write_text("default input")
    (data / "b.csv").write_text("submitted input")
    files.upload(str(data), target_path="runs-test", overwrite=True, show_progress=False)

    n = PipelineParameter("n", default_value=1)
    rate = PipelineParameter("rate", default_value=0.5)
    flag = PipelineParameter("flag", default_value=False)
    label = PipelineParameter("label", default_value="default")
    input_path = PipelineParameter("input_path", default_value=DataPath(files, "runs-test/a.csv"))
    first_out = PipelineData("first_out", datastore=store)
    second_out = PipelineData("second_out")  # falls back to the workspace default datastore

    first = PythonScriptStep(
        "write.py",
        name="first",
        source_directory=scripts,
        arguments=[
            "--n",
            n,
            "--rate",
            rate,
            "--flag",
            flag,
            "--in_path",
            (input_path, DataPathComputeBinding()),
            "--out",
            first_out,
        ],
        inputs=[(input_path, DataPathComputeBinding())],
        outputs=[first_out],
    )
    second = PythonScriptStep(
        "write.py",
        name="second",
        source_directory=scripts,
        arguments=["--in_first", first_out.as_download("first_data"), "--label", label, "--out", second_out],
        inputs=[first_out.as_download("first_data")],
        outputs=[second_out],
        params={"label": label},
    )
    last = PythonScriptStep(
        "write.py",
        name="last",
        source_directory=scripts,
        arguments=["--out", "$AZUREML_DATAREFERENCE_o"],
        outputs=[PipelineData("o")],
    )
    last.run_after(second)
    pipeline = Pipeline(workspace, steps=StepSequence([[first], [second, last]]))

    run = Experiment(workspace, "runs_params").submit(
        pipeline,
        pipeline_parameters={"n": 3, "flag": True, "label": "x y", "input_path": DataPath(files, "runs-test/b.csv")},
        tags={"purpose": "test"},
    )
    assert run.wait_for_completion(show_output=False) == "Finished"
    assert run.get_status() == "Finished"
    assert run.get_tags() == {"purpose": "test"}
    steps = {s.name: s for s in run.get_steps()}
    assert set(steps) == {"first", "second", "last"}
    assert all(s.get_status() == "Finished" for s in steps.values())

    first_result = result_of(steps["first"], "first_out", tmp_path)
    assert first_result["args"] == {"--n": "3", "--rate": "0.5", "--flag": "True"}
    assert first_result["inputs"]["--in_path"] == "submitted input"
    second_result = result_of(run.find_step_run("second")[0], "second_out", tmp_path)
    assert second_result["args"] == {"--label": "x y"}
    assert second_result["inputs"]["--in_first"] == {"result.json": json.dumps(first_result)}
    assert steps["second"].get_output_data("second_out").datastore_name == "workspaceblobstore"
    # run_after: 'last' started only after 'second' ended (StepSequence also put it after 'first').
    last_result = result_of(steps["last"], "o", tmp_path)
    assert last_result["t"] >= second_result["t"]


def test_two_runs_never_share_output_paths(workspace, scripts, tmp_path):
    out = PipelineData("out")
    step = PythonScriptStep("write.py", name="only", source_directory=scripts, arguments=["--out", out], outputs=[out])
    pipeline = Pipeline(workspace, [step])
    experiment = Experiment(workspace, "runs_twice")
    run1 = experiment.submit(pipeline)
    run2 = experiment.submit(pipeline, regenerate_outputs=True)  # else the second run reuses the first
    ref1 = run1.find_step_run("only")[0].get_output_data("out")
    ref2 = run2.find_step_run("only")[0].get_output_data("out")
    assert ref1.path_on_datastore != ref2.path_on_datastore
    assert (
        result_of(run1.find_step_run("only")[0], "out", tmp_path)["t"]
        < result_of(run2.find_step_run("only")[0], "out", tmp_path)["t"]
    )
    assert [r.id for r in experiment.get_runs()][:2] == [run2.id, run1.id]


def test_failed_step_fails_the_run_and_stops_what_depends_on_it(workspace, scripts):
    a_out, b_out = PipelineData("a_out"), PipelineData("b_out")
    PythonScriptStep("write.py", name="ok", source_directory=scripts, arguments=["--out", a_out], outputs=[a_out])
    bad = PythonScriptStep("fail.py", name="bad", source_directory=scripts, inputs=[a_out])
    after = PythonScriptStep(
        "write.py", name="after", source_directory=scripts, arguments=["--out", b_out], outputs=[b_out]
    )
    after.run_after(bad)
    run = Experiment(workspace, "runs_failure").submit(Pipeline(workspace, [after]))
    with pytest.raises(ActivityFailedException, match="failed steps: bad"):
        run.wait_for_completion(show_output=False)
    assert run.get_status() == "Failed"
    assert run.wait_for_completion(show_output=False, raise_on_error=False) == "Failed"
    statuses = {s.name: s.get_status() for s in run.get_steps()}
    assert statuses["ok"] == "Finished" and statuses["bad"] == "Failed"
    assert statuses.get("after", "Canceled") == "Canceled"  # never ran: it depends on the failed step
    assert "StepRun 'bad': Failed" in run.summary()


def test_bad_submissions_are_rejected_before_anything_runs(workspace, scripts):
    p = PipelineParameter("count", default_value=2)
    step = PythonScriptStep("write.py", name="s", source_directory=scripts, arguments=["--c", p, "--out", "o"])
    pipeline = Pipeline(workspace, [step])
    experiment = Experiment(workspace, "runs_rejected")
    with pytest.raises(PipelineParameterError, match="with name cuont does not exist"):
        experiment.submit(pipeline, pipeline_parameters={"cuont": 3})
    with pytest.raises(PipelineParameterError, match="'count' is of type int"):
        experiment.submit(pipeline, pipeline_parameters={"count": "3"})
    assert experiment.get_runs() == []


def test_data_reference_upload_mode_writes_to_a_fixed_location(workspace, script_dir, tmp_path):
    (script_dir / "export.py").write_text(
        "import os\nos.makedirs('export', exist_ok=True)\nopen('export/report.txt', 'w').write('final report')\n"
    )
    store = Datastore(workspace, "workspacefilestore")
    target = DataReference(store, "report", "reports/latest", mode="upload", path_on_compute="export", overwrite=True)
    step = PythonScriptStep("export.py", name="export", source_directory=script_dir, inputs=[target])
    run = Experiment(workspace, "runs_upload").submit(Pipeline(workspace, [step]))
    assert run.wait_for_completion(show_output=False) == "Finished"
    assert store.download(str(tmp_path / "got"), prefix="reports/latest", show_progress=False) == 1
    assert (tmp_path / "got" / "reports" / "latest" / "report.txt").read_text() == "final report"


def test_runs_of_an_earlier_pipeline_version_stay_readable(workspace, scripts):
    out = PipelineData("out")
    old = PythonScriptStep(
        "write.py", name="old_step", source_directory=scripts, arguments=["--out", out], outputs=[out]
    )
    experiment = Experiment(workspace, "runs_versions")
    first = experiment.submit(Pipeline(workspace, [old]))
    new_out = PipelineData("out")
    new = PythonScriptStep(
        "write.py", name="new_step", source_directory=scripts, arguments=["--out", new_out], outputs=[new_out]
    )
    experiment.submit(Pipeline(workspace, [new]))
    from aml_airflow_provider.pipeline.core import PipelineRun

    reloaded = PipelineRun.get(workspace, first.id)  # reads the experiment's current spec
    assert [(s.name, s.get_status()) for s in reloaded.get_steps()] == [("old_step", "Finished")]


def test_cancel_stops_the_running_step_and_skips_the_rest(workspace, script_dir):
    import threading
    import time

    from aml_airflow_provider.pipeline.core import PipelineRun

    child_pid = script_dir.parent / "child.pid"
    (script_dir / "slow.py").write_text(
        "import subprocess, sys, time\n"
        "child = subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(600)'])\n"
        f"open({str(child_pid)!r}, 'w').write(str(child.pid))\n"
        "print('working', flush=True)\ntime.sleep(600)\n"
    )
    (script_dir / "never.py").write_text("print('must not run')\n")
    out = PipelineData("out")
    slow = PythonScriptStep("slow.py", name="slow", source_directory=script_dir, outputs=[out], arguments=[out])
    later = PythonScriptStep("never.py", name="later", source_directory=script_dir, inputs=[out])
    experiment = Experiment(workspace, "runs_cancel")
    deployment = workspace._deployment
    canceled: list[PipelineRun] = []

    def cancel_when_slow_runs() -> None:
        # Airflow runs tasks in the main thread (it needs signals), so the canceller is the other one.
        while True:
            for r in deployment.list_dag_runs("runs_cancel"):
                if any(
                    t.task_id == "slow" and (t.state or "").endswith("running")
                    for t in deployment.task_instances("runs_cancel", r.run_id)
                ):
                    while not child_pid.exists():  # let the script start its child process
                        time.sleep(0.1)
                    canceled.append(PipelineRun(experiment, r.run_id))
                    canceled[0].cancel()
                    return
            time.sleep(0.2)

    canceller = threading.Thread(target=cancel_when_slow_runs, daemon=True)
    canceller.start()
    experiment.submit(Pipeline(workspace, [slow, later]))  # returns once the run has ended
    canceller.join()
    run = canceled[0]
    assert run.get_status() == "Canceled"
    statuses = {s.name: s.get_status() for s in run.get_steps()}
    assert statuses["slow"] == "Canceled"
    assert statuses.get("later", "Canceled") == "Canceled"
    assert "working" in run.find_step_run("slow")[0].get_job_log()
    _assert_gone(int(child_pid.read_text()))


def _assert_gone(pid: int) -> None:
    """The process has ended (a zombie that nobody reaped yet counts as ended)."""
    import os

    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return
    with open(f"/proc/{pid}/stat") as fh:
        assert fh.read().split()[2] == "Z", f"process {pid} is still running"


def test_continue_on_step_failure_lets_independent_branches_finish(workspace, scripts):
    a_out, c_out = PipelineData("a_out"), PipelineData("c_out")
    bad = PythonScriptStep("fail.py", name="bad", source_directory=scripts)
    after_bad = PythonScriptStep(
        "write.py", name="after_bad", source_directory=scripts, arguments=["--out", a_out], outputs=[a_out]
    )
    after_bad.run_after(bad)
    independent = PythonScriptStep(
        "write.py", name="independent", source_directory=scripts, arguments=["--out", c_out], outputs=[c_out]
    )
    run = Experiment(workspace, "runs_continue").submit(
        Pipeline(workspace, [after_bad, independent]), continue_on_step_failure=True
    )
    assert run.wait_for_completion(show_output=False, raise_on_error=False) == "Failed"
    statuses = {s.name: s.get_status() for s in run.get_steps()}
    assert statuses["bad"] == "Failed" and statuses["independent"] == "Finished"
    assert statuses.get("after_bad", "Canceled") == "Canceled"
