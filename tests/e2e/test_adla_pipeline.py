"""PythonScriptStep -> AdlaStep -> PythonScriptStep through Airflow, with a Data Lake Analytics stand-in.

The stand-in job service (public job API 2016-11-01) gets tokens checked from a stand-in Entra ID; a
small "engine" in this test does what the submitted U-SQL asks (read the CSV the script names, keep the
rows above the threshold, write the output) on Azurite when the job is created, so the last step reads
real data that went through the job's locations.
"""

from __future__ import annotations

import csv
import io
import re

import pytest
from azure.storage.blob import BlobServiceClient

from aml_airflow_provider.core import Experiment
from aml_airflow_provider.core.compute import ComputeTarget
from aml_airflow_provider.pipeline.core import Pipeline, PipelineData, PipelineParameter
from aml_airflow_provider.pipeline.steps import AdlaStep, PythonScriptStep
from tests.support.adla_server import AdlaServer

pytestmark = pytest.mark.e2e

PREP = """
import os, sys
out = sys.argv[sys.argv.index("--out") + 1]
os.makedirs(out, exist_ok=True)
open(os.path.join(out, "rows.csv"), "w").write("id,v\\n1,5\\n2,50\\n3,500\\n")
"""
USQL = """@rows = EXTRACT id int, v int FROM "@@prepared@@/rows.csv" USING Extractors.Csv(skipFirstNRows: 1);
@big = SELECT * FROM @rows WHERE v > @@threshold@@;
OUTPUT @big TO "@@big@@/big.csv" USING Outputters.Csv();
"""
REPORT = """
import os, sys
args = dict(zip(sys.argv[1::2], sys.argv[2::2]))
os.makedirs(args["--out"], exist_ok=True)
rows = open(os.path.join(args["--big"], "big.csv")).read().split()
open(os.path.join(args["--out"], "report.txt"), "w").write(f"{len(rows)} big rows: {' '.join(rows)}")
"""
_WASB = re.compile(r'"wasb://([^@]+)@[^/]+/([^"]+)"')


def usql_engine(connection_string: str):
    """Run the one query shape this test submits, against Azurite."""
    service = BlobServiceClient.from_connection_string(connection_string)

    def run(body: dict) -> None:
        script = body["properties"]["script"]
        (src_container, src), (dst_container, dst) = _WASB.findall(script)
        threshold = int(re.search(r"WHERE v > (\d+)", script).group(1))
        text = service.get_blob_client(src_container, src).download_blob().readall().decode()
        rows = [r for r in csv.DictReader(io.StringIO(text)) if int(r["v"]) > threshold]
        out = "".join(f"{r['id']},{r['v']}\n" for r in rows)
        service.get_blob_client(dst_container, dst).upload_blob(out.encode(), overwrite=True)

    return run


def test_python_then_adla_then_python(workspace, blob_datastore, azurite, script_dir, tmp_path, monkeypatch):
    (script_dir / "prep.py").write_text(PREP)
    (script_dir / "big.usql").write_text(USQL)
    (script_dir / "report.py").write_text(REPORT)
    monkeypatch.setenv("AIRFLOW__AML__ADLA_POLL_SECONDS", "0.1")
    with AdlaServer() as server:
        for name, value in server.ca_env().items():
            monkeypatch.setenv(name, value)
        server.on_submit = usql_engine(azurite.connection_string)
        server.script_next_job(["Accepted", "Compiling", "Queued", "Running", "Ended"])
        adla = ComputeTarget.attach(workspace, "adla-e2e", server.attach_configuration())
        prepared, big, report = (PipelineData(n, datastore=blob_datastore) for n in ("prepared", "big", "report"))
        prep = PythonScriptStep(
            "prep.py", name="prep", source_directory=script_dir, arguments=["--out", prepared], outputs=[prepared]
        )
        adla_step = AdlaStep(
            "big.usql",
            name="keep big rows",
            inputs=[prepared],
            outputs=[big],
            params={"threshold": PipelineParameter("threshold", default_value=10)},
            compute_target=adla,
            source_directory=script_dir,
        )
        final = PythonScriptStep(
            "report.py",
            name="report",
            source_directory=script_dir,
            arguments=["--big", big, "--out", report],
            inputs=[big],
            outputs=[report],
        )
        run = Experiment(workspace, "adla_e2e").submit(
            Pipeline(workspace, [prep, adla_step, final]), pipeline_parameters={"threshold": 40}
        )
        assert run.wait_for_completion(show_output=False) == "Finished"

        steps = {s.name: s for s in run.get_steps()}
        ref = steps["report"].get_output_data("report")
        ref.download(str(tmp_path / "out"), show_progress=False)
        assert (tmp_path / "out" / ref.path_on_datastore / "report.txt").read_text() == "2 big rows: 2,50 3,500"
        (body,) = server.submitted()
        assert "WHERE v > 40" in body["properties"]["script"]
        assert "@@" not in body["properties"]["script"]
        assert steps["keep big rows"]._xcoms()["adla_job_url"].startswith(server.url)
    adla.detach()
