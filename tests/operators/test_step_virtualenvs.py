"""Steps whose environment asks for packages run in a virtualenv built once per dependency set.

Real ``venv`` and ``pip install`` from the package index (``inflection``, a 10 kB pure-Python package
the test environment does not have).
"""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import pytest

from aml_airflow_provider.core import Environment, RunConfiguration
from aml_airflow_provider.core.conda_dependencies import CondaDependencies
from aml_airflow_provider.exceptions import StepRunError
from aml_airflow_provider.operators.python_script_step import PythonScriptStepOperator
from aml_airflow_provider.runtime.virtualenv import (
    COMPLETE_MARKER,
    conda_to_pip,
    ensure_virtualenv,
    environment_key,
    requirements_of,
)
from tests.support.task_instance import FakeTI

PACKAGE = "inflection==0.5.1"
WHERE_AM_I = """
import json, os, sys
import inflection
from aml_airflow_provider.core import Run
out = sys.argv[sys.argv.index("--out") + 1]
os.makedirs(out, exist_ok=True)
with open(os.path.join(out, "where.json"), "w") as fh:
    json.dump({"prefix": sys.prefix, "inflection": inflection.__file__, "camel": inflection.camelize("data_prep"),
               "run": type(Run.get_context()).__name__}, fh)
"""


@pytest.fixture
def venv_root(tmp_path, monkeypatch) -> Path:
    root = tmp_path / "venvs"
    monkeypatch.setenv("AIRFLOW__AML__VIRTUALENV_ROOT", str(root))
    return root


def environment(*pip: str, conda: tuple[str, ...] = ()) -> dict:
    run = RunConfiguration(conda_dependencies=CondaDependencies.create(pip_packages=pip, conda_packages=conda))
    return run.to_dict()["environment"]


def run_step(workspace, script_dir: Path, task_id: str, env: dict) -> dict:
    (script_dir / "where.py").write_text(WHERE_AM_I)
    op = PythonScriptStepOperator(
        task_id=task_id,
        workspace="test-ws",
        script_name="where.py",
        source_directory=str(script_dir),
        arguments=["--out", "$AZUREML_DATAREFERENCE_o"],
        outputs=[{"name": "o", "datastore": "workspaceblobstore"}],
        environment=env,
        allow_reuse=False,
    )
    ti = FakeTI()
    ti.task_id = task_id
    op.execute({"ti": ti, "params": {}})
    from aml_airflow_provider.core import Datastore
    from aml_airflow_provider.uris import DatastoreUri

    location = DatastoreUri.parse(ti.pushed["o"])
    root = Path(Datastore(workspace, location.datastore).root)
    return json.loads((root / location.path / "where.json").read_text())


def test_a_step_with_pip_packages_runs_in_a_virtualenv_built_once(
    workspace, connections, script_dir, venv_root, capsys
):
    assert importlib.util.find_spec("inflection") is None, "the worker must not have the package already"

    first = run_step(workspace, script_dir, "first", environment(PACKAGE))
    second = run_step(workspace, script_dir, "second", environment(PACKAGE))

    venv = venv_root / environment_key([PACKAGE])
    assert first == second
    assert Path(first["prefix"]) == venv and Path(first["inflection"]).is_relative_to(venv)
    assert first["camel"] == "DataPrep"
    assert first["run"] == "_OfflineRun" or first["run"].endswith("Run")  # the package is importable inside
    log = capsys.readouterr().out
    assert log.count(f"Running in virtualenv {venv} (built in") == 1
    assert log.count(f"Running in virtualenv {venv} (found in") == 1
    assert importlib.util.find_spec("inflection") is None  # nothing leaked into the worker's own Python


def test_steps_without_packages_run_in_the_workers_python(workspace, connections, script_dir, venv_root):
    with pytest.raises(StepRunError, match="No module named 'inflection'"):
        run_step(workspace, script_dir, "plain", environment())
    assert not venv_root.exists()


def test_user_managed_dependencies_use_the_given_interpreter(workspace, connections, script_dir, venv_root):
    env = Environment("mine")
    env.python.conda_dependencies.add_pip_package(PACKAGE)
    env.python.user_managed_dependencies = True
    env.python.interpreter_path = "/no/such/python"
    with pytest.raises(StepRunError, match=r"Step 'own': its environment's interpreter_path '/no/such/python' is not"):
        run_step(workspace, script_dir, "own", env.to_dict())
    env.python.interpreter_path = sys.executable  # runs, with what that Python has: the package is not there
    with pytest.raises(StepRunError, match="No module named 'inflection'"):
        run_step(workspace, script_dir, "own", env.to_dict())
    assert not venv_root.exists()  # nothing installed for a user-managed environment


def test_two_tasks_needing_one_virtualenv_build_it_once(tmp_path):
    code = (
        "import sys; from pathlib import Path; from aml_airflow_provider.runtime.virtualenv import ensure_virtualenv; "
        f"v = ensure_virtualenv([{PACKAGE!r}], Path(sys.argv[1])); print(v.built)"
    )
    procs = [
        subprocess.Popen([sys.executable, "-c", code, str(tmp_path)], stdout=subprocess.PIPE, text=True)
        for _ in range(2)
    ]
    outputs = sorted(p.communicate(timeout=600)[0].strip() for p in procs)
    assert [p.returncode for p in procs] == [0, 0]
    assert outputs == ["False", "True"]  # one built it, the other waited and found it
    python = tmp_path / environment_key([PACKAGE]) / "bin" / "python"
    check = subprocess.run([python, "-c", "import inflection; print(inflection.__version__)"], capture_output=True)
    assert check.stdout.decode().strip() == "0.5.1"


def test_a_half_built_virtualenv_is_rebuilt(tmp_path):
    broken = tmp_path / environment_key([PACKAGE])
    (broken / "bin").mkdir(parents=True)
    (broken / "bin" / "python").write_text("not an interpreter")  # a build that died: no .complete marker

    venv = ensure_virtualenv([PACKAGE], tmp_path)

    assert venv.built and (venv.path / COMPLETE_MARKER).exists()
    assert subprocess.run([venv.python, "-c", "import inflection"]).returncode == 0


def test_an_unknown_package_fails_with_pips_answer(tmp_path):
    with pytest.raises(StepRunError) as info:
        ensure_virtualenv(["aml-airflow-provider-no-such-package==0.0.1"], tmp_path, where="Step 'train'")
    message = str(info.value)
    assert message.startswith("Step 'train': could not install aml-airflow-provider-no-such-package==0.0.1")
    assert "No matching distribution" in message or "Could not find a version" in message
    assert not (tmp_path / environment_key(["aml-airflow-provider-no-such-package==0.0.1"]) / COMPLETE_MARKER).exists()


@pytest.mark.parametrize(
    ("conda", "pip"),
    [
        ("numpy=1.26", "numpy==1.26"),
        ("numpy=1.26.*", "numpy==1.26.*"),
        ("numpy 1.26", "numpy==1.26"),
        ("conda-forge::pandas>=2", "pandas>=2"),
        ("scikit-learn", "scikit-learn"),
        ("python=3.11", None),
        ("pip", None),
    ],
)
def test_conda_packages_become_pip_requirements(conda, pip):
    assert conda_to_pip(conda) == pip


def test_requirements_are_deduplicated_and_order_free():
    env = environment("b==1", "a", conda=("a", "python=3.11"))
    assert requirements_of(env) == ["a", "b==1"]
    assert environment_key(["a", "b==1"]) == environment_key(["b==1", "a"]) != environment_key(["a", "b==2"])


def test_a_private_index_credential_stays_out_of_logs_and_errors(tmp_path, caplog):
    requirement = "private-pkg @ http://builder:s3cr3t-token@127.0.0.1:9/private_pkg-1.0-py3-none-any.whl"
    with pytest.raises(StepRunError) as info:
        ensure_virtualenv([requirement], tmp_path, where="Step 'train'")
    assert "s3cr3t-token" not in str(info.value) + caplog.text
    assert "http://***@127.0.0.1:9/private_pkg-1.0-py3-none-any.whl" in str(info.value)
