"""PythonScriptStepOperator in a hand-written DAG file, run by Airflow: templating, XCom wiring, outputs."""

from __future__ import annotations

import importlib.util
import json
import textwrap
from pathlib import Path

import pytest

from aml_airflow_provider.core import Datastore
from aml_airflow_provider.uris import DatastoreUri

pytestmark = pytest.mark.e2e

MAKE = """
import argparse, json, os
p = argparse.ArgumentParser()
p.add_argument("--rows", type=int); p.add_argument("--run"); p.add_argument("--out")
a = p.parse_args()
os.makedirs(a.out, exist_ok=True)
json.dump({"rows": list(range(a.rows)), "run": a.run}, open(os.path.join(a.out, "table.json"), "w"))
"""
USE = """
import json, os, sys
table = json.load(open(os.path.join(os.environ["AZUREML_DATAREFERENCE_table"], "table.json")))
out = os.environ["AZUREML_DATAREFERENCE_summary"]
os.makedirs(out, exist_ok=True)
json.dump({"count": len(table["rows"]), "from_run": table["run"], "label": sys.argv[1]},
          open(os.path.join(out, "summary.json"), "w"))
"""

DAG_FILE = '''
"""A hand-written DAG that uses the operator directly (no v1 model)."""
from airflow.sdk import DAG, Param

from aml_airflow_provider.operators import PythonScriptStepOperator

SRC = {src!r}

with DAG("handwritten_aml", schedule=None, params={{"rows": Param(3, type="integer")}}) as dag:
    make = PythonScriptStepOperator(
        task_id="make",
        workspace="test-ws",
        script_name="make.py",
        source_directory=SRC,
        arguments=["--rows", "{{{{ params.rows }}}}", "--run", "{{{{ run_id }}}}",
                   "--out", "$AZUREML_DATAREFERENCE_table"],
        outputs=[{{"name": "table", "datastore": "workspaceblobstore"}}],
    )
    use = PythonScriptStepOperator(
        task_id="use",
        workspace="test-ws",
        script_name="use.py",
        source_directory=SRC,
        arguments=["summary of {{{{ dag.dag_id }}}}"],
        inputs=[{{"name": "table", "step": "make", "output": "table"}}],
        outputs=[{{"name": "summary", "datastore": "workspaceblobstore"}}],
    )
    make >> use
'''


def test_operator_in_a_hand_written_dag_runs_through_airflow(workspace, script_dir):
    (script_dir / "make.py").write_text(MAKE)
    (script_dir / "use.py").write_text(USE)
    dag_file = workspace._deployment.dags_folder / "handwritten_aml.py"
    dag_file.parent.mkdir(parents=True, exist_ok=True)
    dag_file.write_text(textwrap.dedent(DAG_FILE.format(src=str(script_dir))))
    spec = importlib.util.spec_from_file_location("handwritten_aml", dag_file)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)

    dag_run = module.dag.test(run_conf={"rows": 5})

    assert str(dag_run.state).endswith("success")
    xcoms = workspace._deployment.xcoms("handwritten_aml", dag_run.run_id, "use")
    location = DatastoreUri.parse(xcoms["summary"])
    root = Path(Datastore(workspace, location.datastore).root)
    summary = json.loads((root / location.path / "summary.json").read_text())
    assert summary == {"count": 5, "from_run": dag_run.run_id, "label": "summary of handwritten_aml"}
