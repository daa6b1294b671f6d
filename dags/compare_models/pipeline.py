"""The seed article's pipeline ("create, run and track ML pipelines"), running on Airflow.

Only the import lines differ from the SDK v1 version: ``azureml.`` became ``aml_airflow_provider.``.
A data-preparation step splits a small table of hand-written digits (it ships inside scikit-learn,
so nothing is downloaded); two training steps read the same prepared data and train different
models; a compare step scores both on the test set and keeps the winner's first ``pipeline_arg``
predictions.

Run it with ``make demo`` (or ``python dags/compare_models/pipeline.py``). It creates (or reuses) the
workspace bound to ``$AIRFLOW_HOME``; set ``AML_STORAGE_ACCOUNT`` to an Azure Storage connection
string to keep the data in a blob container instead of a local folder.
"""

import csv
import json
import os
import sys
import tempfile

from aml_airflow_provider.core import Datastore, Experiment, Workspace
from aml_airflow_provider.data.data_reference import DataReference
from aml_airflow_provider.pipeline.core import Pipeline, PipelineData, PipelineParameter
from aml_airflow_provider.pipeline.steps import PythonScriptStep

project_folder = os.path.join(os.path.dirname(os.path.abspath(__file__)), "scripts")


def build_pipeline(ws):
    """The pipeline: prep -> (train logistic, train random forest) -> compare."""
    def_blob_store = Datastore(ws, "workspaceblobstore")

    blob_input_data = DataReference(
        datastore=def_blob_store, data_reference_name="test_data", path_on_datastore="digits/digits.csv"
    )
    processed_data1 = PipelineData("processed_data1", datastore=def_blob_store, output_name="processed_data1")
    model_a = PipelineData("model_a", datastore=def_blob_store)
    model_b = PipelineData("model_b", datastore=def_blob_store)
    out_data3 = PipelineData("comparison", datastore=def_blob_store)
    pipeline_param = PipelineParameter(name="pipeline_arg", default_value=10)

    prepStep = PythonScriptStep(
        name="prep",
        script_name="prep.py",
        arguments=["--input", blob_input_data, "--output", processed_data1],
        inputs=[blob_input_data],
        outputs=[processed_data1],
        source_directory=project_folder,
    )
    trainStepA = PythonScriptStep(
        name="train_logistic",
        script_name="train.py",
        arguments=["--data", processed_data1, "--model", "logistic", "--output", model_a],
        inputs=[processed_data1],
        outputs=[model_a],
        source_directory=project_folder,
    )
    trainStepB = PythonScriptStep(
        name="train_random_forest",
        script_name="train.py",
        arguments=["--data", processed_data1, "--model", "random_forest", "--output", model_b],
        inputs=[processed_data1],
        outputs=[model_b],
        source_directory=project_folder,
    )
    compareStep = PythonScriptStep(
        name="compare",
        script_name="compare.py",
        arguments=[
            "--comp_data1",
            model_a,
            "--comp_data2",
            model_b,
            "--test_data",
            processed_data1,
            "--output_data",
            out_data3,
            "--param1",
            pipeline_param,
        ],
        inputs=[model_a, model_b, processed_data1],
        outputs=[out_data3],
        source_directory=project_folder,
    )
    compareModels = [prepStep, trainStepA, trainStepB, compareStep]
    return Pipeline(workspace=ws, steps=[compareModels], description="Compare two digit classifiers")


def upload_raw_data(ws):
    """Put the raw table on the default blob store, as the article uploads its data file."""
    from sklearn.datasets import load_digits

    digits = load_digits()
    folder = tempfile.mkdtemp(prefix="digits-")
    path = os.path.join(folder, "digits.csv")
    with open(path, "w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow([f"pixel{i}" for i in range(digits.data.shape[1])] + ["label"])
        for x, y in zip(digits.data, digits.target, strict=True):
            writer.writerow([int(v) for v in x] + [int(y)])
    def_blob_store = Datastore(ws, "workspaceblobstore")
    def_blob_store.upload_files([path], target_path="digits", overwrite=True)


def main(pipeline_arg=None):
    ws = Workspace.create(
        name="aml-demo",
        subscription_id="<subscription-id>",
        resource_group="<resource-group>",
        location="<workspace_region>",
        storage_account=os.environ.get("AML_STORAGE_ACCOUNT"),
        exist_ok=True,
    )
    upload_raw_data(ws)
    pipeline1 = build_pipeline(ws)
    parameters = {"pipeline_arg": pipeline_arg} if pipeline_arg is not None else None
    pipeline_run1 = Experiment(ws, "Compare_Models_Exp").submit(pipeline1, pipeline_parameters=parameters)
    pipeline_run1.wait_for_completion()

    compare = pipeline_run1.find_step_run("compare")[0]
    result_ref = compare.get_output_data("comparison")
    target = tempfile.mkdtemp(prefix="comparison-")
    result_ref.download(target, show_progress=False)
    with open(os.path.join(target, result_ref.path_on_datastore, "comparison.json")) as fh:
        result = json.load(fh)
    print(f"Winner: {result['winner']}; test accuracy: {result['test_accuracy']}")
    for step, metrics in pipeline_run1.get_metrics().items():
        if metrics:
            print(f"Metrics of step {step}: {metrics}")
    return pipeline_run1


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else None)
