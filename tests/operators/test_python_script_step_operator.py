"""PythonScriptStepOperator.execute(): the v1 contract a script sees, and what happens to its data.

These tests drive ``execute()`` directly with a small task-instance stand-in (for XCom) against real
datastores: a local folder, and Azurite for blob. Connections come from ``AIRFLOW_CONN_*`` variables,
as a worker would get them from its secrets backend.
"""

from __future__ import annotations

import json
import threading
from pathlib import Path

import pytest

from aml_airflow_provider.exceptions import DatastoreError, StepRunError, UserErrorException
from aml_airflow_provider.operators.python_script_step import PythonScriptStepOperator
from aml_airflow_provider.uris import DatastoreUri
from tests.support.task_instance import Background, FakeTI

DUMP_SCRIPT = """
import json, os, sys
out = sys.argv[sys.argv.index("--out") + 1]
os.makedirs(out, exist_ok=True)
env = {k: v for k, v in os.environ.items() if k.startswith(("AZUREML_", "AML_", "AIRFLOW", "MY_"))}
inputs = {}
for name in ("raw", "folder", "upstream"):
    path = env.get("AZUREML_DATAREFERENCE_" + name)
    if path and os.path.isfile(path):
        inputs[name] = open(path).read()
    elif path and os.path.isdir(path):
        inputs[name] = sorted(os.listdir(path))
with open(os.path.join(out, "dump.json"), "w") as fh:
    json.dump({"argv": sys.argv[1:], "env": env, "inputs": inputs, "cwd_files": sorted(os.listdir("."))}, fh)
open("written_in_cwd.txt", "w").write("the script's working directory is a copy")
"""


def in_background(op: PythonScriptStepOperator, ti: FakeTI) -> Background:
    """``op.execute`` in a thread, once its script process has started."""
    return Background(op, {"ti": ti, "params": {}}, lambda: op._process is not None and op._process._proc is not None)


def local_root(workspace, name: str = "workspaceblobstore") -> Path:
    from aml_airflow_provider.core import Datastore

    return Path(Datastore(workspace, name).root)


def make_operator(script_dir: Path, **kwargs) -> PythonScriptStepOperator:
    (script_dir / "dump.py").write_text(DUMP_SCRIPT)
    defaults = dict(task_id="t1", workspace="test-ws", script_name="dump.py", source_directory=str(script_dir))
    return PythonScriptStepOperator(**{**defaults, **kwargs})


def read_output(workspace, uri: str) -> dict:
    location = DatastoreUri.parse(uri)
    from aml_airflow_provider.core import Datastore

    return json.loads((Path(Datastore(workspace, location.datastore).root) / location.path / "dump.json").read_text())


def test_script_sees_v1_argument_and_environment_contract(workspace, connections, script_dir, capsys):
    root = local_root(workspace)
    (root / "contract" / "folder").mkdir(parents=True, exist_ok=True)
    (root / "contract" / "raw.csv").write_text("a,b\n1,2\n")
    (root / "contract" / "folder" / "x.txt").write_text("x")
    op = make_operator(
        script_dir,
        arguments=[
            "--data",
            "$AZUREML_DATAREFERENCE_raw",
            "--n",
            "$AML_PARAMETER_n",
            "--flag=${AML_PARAMETER_flag}",
            "--k",
            "$AML_PARAMETER_k",
            "--out",
            "$AZUREML_DATAREFERENCE_result",
            "$(rm -rf /); echo",
        ],
        inputs=[
            {"name": "raw", "uri": "azureml://datastores/workspaceblobstore/paths/contract/raw.csv"},
            {
                "name": "folder",
                "uri": "azureml://datastores/workspaceblobstore/paths/contract/folder",
                "mode": "download",
            },
        ],
        outputs=[{"name": "result", "datastore": "workspaceblobstore"}],
        pipeline_parameters=["n", "flag"],
        step_params={"k": "fixed-$AML_PARAMETER_n", "plain": "v"},
        environment_variables={"MY_VAR": "from runconfig"},
    )
    ti = FakeTI()
    op.execute({"ti": ti, "params": {"n": 7, "flag": True}})

    uri = ti.pushed["result"]
    assert set(ti.pushed) == {"result", "aml.step_run"}  # one XCom per output, one of facts
    assert (
        uri == "azureml://datastores/workspaceblobstore/paths/azureml/dag1/manual__2026-01-01T00_00_00_00_00/t1/result"
    )
    dump = read_output(workspace, uri)
    raw_path = str(root / "contract" / "raw.csv")  # mount on a local datastore: the file itself
    assert dump["argv"][:6] == ["--data", raw_path, "--n", "7", "--flag=True", "--k"]
    assert dump["argv"][6] == "fixed-7"
    assert dump["argv"][-1] == "$(rm -rf /); echo"  # no shell: passed through literally
    env = dump["env"]
    assert env["AZUREML_DATAREFERENCE_raw"] == raw_path
    assert env["AML_PARAMETER_n"] == "7" and env["AML_PARAMETER_flag"] == "True"
    assert env["AML_PARAMETER_k"] == "fixed-7" and env["AML_PARAMETER_plain"] == "v"
    assert env["MY_VAR"] == "from runconfig"
    assert env["AZUREML_RUN_ID"] == "manual__2026-01-01T00:00:00+00:00.t1"
    assert dump["inputs"] == {"raw": "a,b\n1,2\n", "folder": ["x.txt"]}
    assert "dump.py" in dump["cwd_files"]
    assert not (script_dir / "written_in_cwd.txt").exists(), "the script must run in a copy of its source folder"
    log = capsys.readouterr().out
    assert log.count("'mount' inputs on datastore 'workspaceblobstore' are its folder itself") == 1
    assert "Preparing to call script [ dump.py ] with arguments: ['--data', '$AZUREML_DATAREFERENCE_raw'" in log
    assert f"After variable expansion, calling script [ dump.py ] with arguments: ['--data', '{raw_path}'" in log


def test_worker_airflow_settings_are_not_passed_to_the_script(workspace, connections, script_dir, monkeypatch):
    monkeypatch.setenv("AIRFLOW__DATABASE__SQL_ALCHEMY_CONN", "postgresql://user:secret@db/airflow")
    op = make_operator(
        script_dir,
        arguments=["--out", "$AZUREML_DATAREFERENCE_o"],
        outputs=[{"name": "o", "datastore": "workspaceblobstore"}],
    )
    ti = FakeTI()
    op.execute({"ti": ti, "params": {}})
    env = read_output(workspace, ti.pushed["o"])["env"]
    assert not [k for k in env if k.startswith("AIRFLOW__") or k.startswith("AIRFLOW_CONN_")]


def test_failed_script_fails_with_stderr_tail_and_publishes_nothing(workspace, connections, script_dir):
    (script_dir / "fail.py").write_text(
        "import os, sys\nos.makedirs(sys.argv[1], exist_ok=True)\n"
        "open(os.path.join(sys.argv[1], 'half.csv'), 'w').write('x')\n"
        "print('some output')\nprint('boom: the model did not converge', file=sys.stderr)\nsys.exit(3)\n"
    )
    op = PythonScriptStepOperator(
        task_id="fails",
        workspace="test-ws",
        script_name="fail.py",
        source_directory=str(script_dir),
        arguments=["$AZUREML_DATAREFERENCE_o"],
        outputs=[{"name": "o", "datastore": "workspaceblobstore"}],
    )
    ti = FakeTI()
    with pytest.raises(StepRunError, match=r"(?s)Step 'fails' failed: fail.py exited with code 3.*did not converge"):
        op.execute({"ti": ti, "params": {}})
    assert "o" not in ti.pushed  # no output URI for a failed step
    root = local_root(workspace)
    # ... but its log is kept with the step run, to find out what went wrong.
    record = DatastoreUri.parse(ti.pushed["aml.step_run"]["record"])
    driver_log = root / record.path / "files" / "azureml-logs" / "70_driver_log.txt"
    assert "boom: the model did not converge" in driver_log.read_text()
    assert json.loads((root / record.path / "details.json").read_text())["status"] == "Failed"
    step_folder = root / "azureml" / "dag1" / "manual__2026-01-01T00_00_00_00_00" / "fails"
    assert sorted(p.name for p in step_folder.iterdir()) == ["step-run"]  # no output folder
    assert not list((root / ".aml-staging").glob("*")), "staged output of a failed step must be removed"


def test_input_from_upstream_output_via_xcom(workspace, connections, script_dir):
    root = local_root(workspace)
    (root / "upstream-out" / "part").mkdir(parents=True, exist_ok=True)
    (root / "upstream-out" / "part" / "a.txt").write_text("a")
    op = make_operator(
        script_dir,
        arguments=["--out", "$AZUREML_DATAREFERENCE_o"],
        inputs=[{"name": "upstream", "step": "prep", "output": "processed"}],
        outputs=[{"name": "o", "datastore": "workspaceblobstore"}],
    )
    ti = FakeTI(upstream={("prep", "processed"): "azureml://datastores/workspaceblobstore/paths/upstream-out/part"})
    op.execute({"ti": ti, "params": {}})
    assert read_output(workspace, ti.pushed["o"])["inputs"]["upstream"] == ["a.txt"]

    missing = make_operator(script_dir, inputs=[{"name": "upstream", "step": "prep", "output": "nope"}])
    with pytest.raises(UserErrorException, match="output 'nope' of task 'prep'"):
        missing.execute({"ti": FakeTI(), "params": {}})


def test_datapath_parameter_input_comes_from_the_run_params(workspace, connections, script_dir):
    root = local_root(workspace, "workspacefilestore")
    (root / "pp").mkdir(parents=True, exist_ok=True)
    (root / "pp" / "raw.csv").write_text("from the param")
    op = make_operator(
        script_dir,
        arguments=["--out", "$AZUREML_DATAREFERENCE_o"],
        inputs=[{"name": "raw", "parameter": "input_data", "mode": "download"}],
        outputs=[{"name": "o", "datastore": "workspaceblobstore"}],
    )
    ti = FakeTI()
    op.execute({"ti": ti, "params": {"input_data": "azureml://datastores/workspacefilestore/paths/pp/raw.csv"}})
    assert read_output(workspace, ti.pushed["o"])["inputs"]["raw"] == "from the param"


def test_upload_mode_output_and_leftovers_of_an_earlier_attempt(workspace, connections, script_dir):
    (script_dir / "write.py").write_text(
        "import os\nos.makedirs('results', exist_ok=True)\nopen('results/scores.csv', 'w').write('1,2')\n"
    )
    root = local_root(workspace)
    target = root / "azureml" / "dag1" / "manual__2026-01-01T00_00_00_00_00" / "up" / "scores"
    target.mkdir(parents=True, exist_ok=True)
    (target / "stale.csv").write_text("left by a killed attempt")
    op = PythonScriptStepOperator(
        task_id="up",
        workspace="test-ws",
        script_name="write.py",
        source_directory=str(script_dir),
        outputs=[{"name": "scores", "datastore": "workspaceblobstore", "mode": "upload", "path_on_compute": "results"}],
    )
    ti = FakeTI(try_number=2)
    op.execute({"ti": ti, "params": {}})
    assert sorted(p.name for p in target.iterdir()) == ["scores.csv"]
    assert (target / "scores.csv").read_text() == "1,2"


def test_unknown_placeholder_and_escaping_paths_are_clear_errors(workspace, connections, script_dir):
    op = make_operator(script_dir, arguments=["$AZUREML_DATAREFERENCE_nothere"])
    with pytest.raises(UserErrorException, match="AZUREML_DATAREFERENCE_nothere is not defined"):
        op.execute({"ti": FakeTI(), "params": {}})
    op = make_operator(
        script_dir,
        outputs=[{"name": "o", "datastore": "workspaceblobstore", "mode": "upload", "path_on_compute": "../../etc"}],
    )
    with pytest.raises(UserErrorException, match="must be a relative path inside"):
        op.execute({"ti": FakeTI(), "params": {}})
    op = make_operator(
        script_dir, inputs=[{"name": "raw", "uri": "azureml://datastores/workspaceblobstore/paths/absent"}]
    )
    with pytest.raises(DatastoreError, match="No data at"):
        op.execute({"ti": FakeTI(), "params": {}})


def test_templated_fields_render_dag_params(workspace, script_dir):
    from airflow.sdk import DAG, Param

    with DAG("templated", schedule=None, params={"day": Param("2026-01-02", type="string")}):
        op = make_operator(script_dir, arguments=["--day", "{{ params.day }}"], step_params={"d": "{{ params.day }}"})
    op.render_template_fields(context={"params": {"day": "2026-01-02"}})
    assert op.arguments == ["--day", "2026-01-02"]
    assert op.step_params == {"d": "2026-01-02"}


def test_on_kill_stops_the_script_and_its_children(workspace, connections, script_dir):
    (script_dir / "slow.py").write_text(
        "import subprocess, sys, time\nsubprocess.Popen([sys.executable, '-c', 'import time; time.sleep(600)'])\n"
        "print('started', flush=True)\ntime.sleep(600)\n"
    )
    op = PythonScriptStepOperator(
        task_id="slow", workspace="test-ws", script_name="slow.py", source_directory=str(script_dir)
    )
    running = in_background(op, FakeTI())
    op.on_kill()
    error = running.result()
    assert isinstance(error, StepRunError)
    assert "exited with code -15" in str(error)


def test_blob_datastore_inputs_are_downloaded_and_outputs_uploaded(
    workspace, blob_datastore, connections, script_dir, tmp_path, capsys
):
    connections()  # the blob datastore was registered after the fixture ran
    data = tmp_path / "data"
    (data / "folder").mkdir(parents=True)
    (data / "raw.csv").write_text("blob,data\n")
    (data / "folder" / "x.txt").write_text("x")
    blob_datastore.upload(str(data), target_path="op-in", overwrite=True, show_progress=False)
    op = make_operator(
        script_dir,
        arguments=["--out", "$AZUREML_DATAREFERENCE_o"],
        inputs=[
            {"name": "raw", "uri": "azureml://datastores/blobstore/paths/op-in/raw.csv"},
            {"name": "folder", "uri": "azureml://datastores/blobstore/paths/op-in/folder"},
        ],
        outputs=[{"name": "o", "datastore": "blobstore"}],
    )
    ti = FakeTI()
    op.execute({"ti": ti, "params": {}})
    # Said once, as information: two mounted inputs, one message.
    assert capsys.readouterr().out.count("No FUSE mounts here: 'mount' inputs on datastore 'blobstore'") == 1
    location = DatastoreUri.parse(ti.pushed["o"])
    assert location.datastore == "blobstore"
    back = tmp_path / "back"
    assert blob_datastore.download(str(back), prefix=location.path, show_progress=False) == 1
    dump = json.loads((back / location.path / "dump.json").read_text())
    assert dump["inputs"] == {"raw": "blob,data\n", "folder": ["x.txt"]}
    assert dump["env"]["AZUREML_DATAREFERENCE_raw"].endswith("/raw.csv")  # a single file keeps its name


def test_step_does_not_start_after_a_failure_unless_continue_on_step_failure(workspace, connections, script_dir):
    from airflow.sdk.exceptions import AirflowSkipException

    class FailedRunTI(FakeTI):
        def get_task_states(self, dag_id, run_ids):
            assert (dag_id, run_ids) == ("dag1", [self.run_id])
            return {self.run_id: {"prep": "success", "train": "failed", "t1": "running"}}

    stop = make_operator(
        script_dir,
        continue_on_step_failure=False,
        arguments=["--out", "$AZUREML_DATAREFERENCE_o"],
        outputs=[{"name": "o", "datastore": "workspaceblobstore"}],
    )
    with pytest.raises(AirflowSkipException, match="train failed and continue_on_step_failure is False"):
        stop.execute({"ti": FailedRunTI(), "params": {}})
    go_on = make_operator(
        script_dir,
        continue_on_step_failure=True,
        arguments=["--out", "$AZUREML_DATAREFERENCE_o"],
        outputs=[{"name": "o", "datastore": "workspaceblobstore"}],
    )
    ti = FailedRunTI()
    go_on.execute({"ti": ti, "params": {}})
    assert "o" in ti.pushed


def test_running_step_stops_when_another_step_fails(workspace, connections, script_dir):
    from airflow.sdk.exceptions import AirflowSkipException

    (script_dir / "slow.py").write_text("import time\nprint('working', flush=True)\ntime.sleep(600)\n")
    started = threading.Event()

    class PeerFailsTI(FakeTI):
        def get_task_states(self, dag_id, run_ids):
            # Nothing has failed when the step starts; a peer fails while it runs.
            return {self.run_id: {"peer": "failed" if started.is_set() else "running"}}

    op = PythonScriptStepOperator(
        task_id="slow",
        workspace="test-ws",
        script_name="slow.py",
        source_directory=str(script_dir),
        continue_on_step_failure=False,
    )
    running = in_background(op, PeerFailsTI())
    started.set()
    error = running.result()
    assert isinstance(error, AirflowSkipException)
    assert "stopped: peer failed and continue_on_step_failure is False" in str(error)
    assert op._process._proc.returncode == -15


def test_concurrent_runs_with_one_fingerprint_are_safe(workspace, connections, script_dir):
    from aml_airflow_provider.runtime.reuse import ReuseIndex

    (script_dir / "w.py").write_text(
        "import os, sys, time\nos.makedirs(sys.argv[1], exist_ok=True)\n"
        "for i in range(20):\n"
        "    open(os.path.join(sys.argv[1], f'{i}.txt'), 'w').write(str(i))\n"
        "    time.sleep(0.01)\n"
    )

    def step():
        return PythonScriptStepOperator(
            task_id="same",
            workspace="test-ws",
            script_name="w.py",
            source_directory=str(script_dir),
            arguments=["$AZUREML_DATAREFERENCE_o"],
            outputs=[{"name": "o", "datastore": "workspaceblobstore"}],
        )

    tis = [FakeTI(), FakeTI()]
    tis[0].run_id, tis[1].run_id = "concurrent_1", "concurrent_2"
    errors: list[BaseException] = []

    def run(ti: FakeTI) -> None:
        try:
            step().execute({"ti": ti, "params": {}})
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(ti,)) for ti in tis]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    fingerprint = tis[0].pushed["aml.step_run"]["fingerprint"]
    assert fingerprint == tis[1].pushed["aml.step_run"]["fingerprint"]
    root = local_root(workspace)
    for ti in tis:  # each run has its own complete output
        assert len(list((root / DatastoreUri.parse(ti.pushed["o"]).path).iterdir())) == 20
    entry = ReuseIndex(_backend(workspace)).lookup(fingerprint)
    assert entry["step_run"]["run_id"] in ("concurrent_1", "concurrent_2") and entry["outputs"]["o"]["files"] == 20
    third = FakeTI()
    third.run_id = "concurrent_3"
    step().execute({"ti": third, "params": {}})
    assert third.pushed["aml.step_run"]["reused_from"] == entry["step_run"]["id"]
    assert third.pushed["o"] == entry["outputs"]["o"]["uri"]


def _backend(workspace):
    from aml_airflow_provider.core import Datastore

    return Datastore(workspace, "workspaceblobstore")._backend
