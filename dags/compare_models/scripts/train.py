"""Train one model on the prepared data and save it with its training accuracy."""

import argparse
import json
import os
import pickle

from common import load_split
from sklearn.ensemble import RandomForestClassifier
from sklearn.linear_model import LogisticRegression

from aml_airflow_provider.core import Run

MODELS = {
    "logistic": lambda: LogisticRegression(max_iter=500),
    "random_forest": lambda: RandomForestClassifier(n_estimators=50, random_state=0),
}

parser = argparse.ArgumentParser()
parser.add_argument("--data", required=True, help="folder with train.csv")
parser.add_argument("--model", choices=sorted(MODELS), required=True)
parser.add_argument("--output", required=True, help="folder for model.pkl and metrics.json")
args = parser.parse_args()

x, y = load_split(args.data, "train")
model = MODELS[args.model]().fit(x, y)
accuracy = float(model.score(x, y))

os.makedirs(args.output, exist_ok=True)
with open(os.path.join(args.output, "model.pkl"), "wb") as fh:
    pickle.dump(model, fh)
with open(os.path.join(args.output, "metrics.json"), "w") as fh:
    json.dump({"model": args.model, "train_accuracy": accuracy, "train_rows": len(y)}, fh)

Run.get_context().log("train_accuracy", accuracy)
print(f"trained {args.model}: training accuracy {accuracy:.3f}")
