"""A pipeline whose middle steps are DatabricksSteps on local Spark (real pyspark), run through Airflow.

prep (PythonScriptStep) -> scale (DatabricksStep, Python script, spark-submit --master local[*])
-> total (DatabricksStep, notebook in Databricks source format) -> report (PythonScriptStep):
each reads the previous step's PipelineData from the datastore and writes its own.
"""

from __future__ import annotations

import pytest

from aml_airflow_provider.core import Experiment
from aml_airflow_provider.core.compute import ComputeTarget, DatabricksCompute
from aml_airflow_provider.pipeline.core import Pipeline, PipelineData, PipelineParameter
from aml_airflow_provider.pipeline.steps import DatabricksStep, PythonScriptStep

pytestmark = pytest.mark.e2e

PREP = """
import os, sys
out = sys.argv[sys.argv.index("--out") + 1]
os.makedirs(out, exist_ok=True)
with open(os.path.join(out, "rows.csv"), "w") as fh:
    fh.write("id,value\\n" + "".join(f"{i},{i * 10}\\n" for i in range(1, 6)))
"""

# v1's contract: our own arguments, then "-<port> <location>" per input and output, then run-context
# arguments the script must tolerate (parse_known_args).
SCALE = """
import argparse, os
from pyspark.sql import SparkSession, functions as F
parser = argparse.ArgumentParser()
parser.add_argument("--factor", type=int)
parser.add_argument("-prepared")
parser.add_argument("-scaled")
args, _ = parser.parse_known_args()
spark = SparkSession.builder.getOrCreate()
df = spark.read.csv(os.path.join(args.prepared, "rows.csv"), header=True, inferSchema=True)
rows = df.withColumn("value", F.col("value") * args.factor).orderBy("id").collect()
os.makedirs(args.scaled, exist_ok=True)
with open(os.path.join(args.scaled, "scaled.csv"), "w") as fh:
    fh.write("id,value\\n" + "".join(f"{r['id']},{r['value']}\\n" for r in rows))
print("scaled", len(rows), "rows on", spark.sparkContext.master)
"""

TOTAL = """# Databricks notebook source
# MAGIC %md
# MAGIC # Total of the scaled values

# COMMAND ----------

import os
source = dbutils.widgets.get("scaled")
target = dbutils.widgets.get("summed")
label = dbutils.widgets.get("label")
df = spark.read.csv(os.path.join(source, "scaled.csv"), header=True, inferSchema=True)
total = df.groupBy().sum("value").collect()[0][0]

# COMMAND ----------

os.makedirs(target, exist_ok=True)
with open(os.path.join(target, "total.txt"), "w") as fh:
    fh.write(f"{label}={total}")
dbutils.notebook.exit(str(total))

# COMMAND ----------

raise RuntimeError("cells after dbutils.notebook.exit must not run")
"""

REPORT = """
import os, sys
args = dict(zip(sys.argv[1::2], sys.argv[2::2]))
os.makedirs(args["--out"], exist_ok=True)
total = open(os.path.join(args["--summed"], "total.txt")).read()
open(os.path.join(args["--out"], "report.txt"), "w").write("report: " + total)
"""


def test_pipeline_with_databricks_steps_on_local_spark(workspace, script_dir, tmp_path):
    (script_dir / "prep.py").write_text(PREP)
    (script_dir / "scale.py").write_text(SCALE)
    (script_dir / "report.py").write_text(REPORT)
    (script_dir / "total.py").write_text(TOTAL)  # a notebook exported in Databricks source format
    ComputeTarget.attach(workspace, "dev-spark", DatabricksCompute.attach_configuration("rg", "ws", local=True))

    prepared, scaled, summed, report = (PipelineData(n) for n in ("prepared", "scaled", "summed", "report"))
    factor = PipelineParameter("factor", default_value=2)
    prep = PythonScriptStep(
        "prep.py", name="prep", source_directory=script_dir, arguments=["--out", prepared], outputs=[prepared]
    )
    scale = DatabricksStep(
        name="scale",
        inputs=[prepared],
        outputs=[scaled],
        python_script_name="scale.py",
        source_directory=script_dir,
        python_script_params=["--factor", factor],
        num_workers=2,
        compute_target=ComputeTarget(workspace, "dev-spark"),
    )
    total = DatabricksStep(
        name="total",
        inputs=[scaled],
        outputs=[summed],
        notebook_path="total",  # relative: found in the pipeline's default_source_directory, with .py
        notebook_params={"label": "sum of values"},
        existing_cluster_id="0101-dev",
        compute_target="local",
    )
    final = PythonScriptStep(
        "report.py",
        name="report",
        source_directory=script_dir,
        arguments=["--summed", summed, "--out", report],
        inputs=[summed],
        outputs=[report],
    )
    pipeline = Pipeline(workspace, [prep, scale, total, final], default_source_directory=script_dir)

    run = Experiment(workspace, "local_spark").submit(pipeline, pipeline_parameters={"factor": 3})
    assert run.wait_for_completion(show_output=False) == "Finished"
    steps = {s.name: s for s in run.get_steps()}
    assert {name: s.get_status() for name, s in steps.items()} == dict.fromkeys(
        ("prep", "scale", "total", "report"), "Finished"
    )

    def read(step: str, output: str, file: str) -> str:
        ref = steps[step].get_output_data(output)
        target = tmp_path / f"{step}-{output}"
        ref.download(str(target), show_progress=False)
        return (target / ref.path_on_datastore / file).read_text()

    assert read("scale", "scaled", "scaled.csv") == "id,value\n1,30\n2,60\n3,90\n4,120\n5,150\n"
    assert read("total", "summed", "total.txt") == "sum of values=450"
    assert read("report", "report", "report.txt") == "report: sum of values=450"
    # The driver log shows the script ran on Spark's local master.
    assert (
        "scaled 5 rows on local[*]"
        in steps["scale"].get_details_with_logs()["logFiles"]["azureml-logs/70_driver_log.txt"]
    )

    # The notebook's dbutils.notebook.exit value is in XCom, as on Databricks.
    assert str(steps["total"]._xcoms()["notebook_result"]) == "450"
