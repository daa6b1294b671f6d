"""Compare the two trained models on the test set and record the winner's first predictions."""

import argparse
import json
import os
import pickle

from common import load_split

parser = argparse.ArgumentParser()
parser.add_argument("--comp_data1", required=True, help="folder of the first model")
parser.add_argument("--comp_data2", required=True, help="folder of the second model")
parser.add_argument("--test_data", required=True, help="folder with test.csv")
parser.add_argument("--output_data", required=True, help="folder for comparison.json")
parser.add_argument("--param1", type=int, required=True, help="how many test predictions of the winner to keep")
args = parser.parse_args()

x, y = load_split(args.test_data, "test")
results = {}
models = {}
for folder in (args.comp_data1, args.comp_data2):
    with open(os.path.join(folder, "metrics.json")) as fh:
        name = json.load(fh)["model"]
    with open(os.path.join(folder, "model.pkl"), "rb") as fh:
        models[name] = pickle.load(fh)
    results[name] = float(models[name].score(x, y))

winner = max(results, key=results.get)
predictions = models[winner].predict(x[: args.param1]).tolist()
os.makedirs(args.output_data, exist_ok=True)
with open(os.path.join(args.output_data, "comparison.json"), "w") as fh:
    json.dump(
        {
            "test_accuracy": results,
            "winner": winner,
            "pipeline_arg": args.param1,
            "first_predictions": predictions,
            "first_labels": y[: args.param1].tolist(),
        },
        fh,
        indent=1,
    )
print(f"test accuracy {results}; winner: {winner}")
