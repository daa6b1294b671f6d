"""Data preparation: split the raw digits table into a training and a test set, scale the pixels."""

import argparse
import csv
import os

import numpy as np

parser = argparse.ArgumentParser()
parser.add_argument("--input", required=True, help="the raw CSV (64 pixel columns, then the label)")
parser.add_argument("--output", required=True, help="folder for train.csv and test.csv")
parser.add_argument("--test_fraction", type=float, default=0.25)
args = parser.parse_args()

with open(args.input, newline="") as fh:
    rows = list(csv.reader(fh))
header, body = rows[0], np.array(rows[1:], dtype=float)
features, labels = body[:, :-1] / 16.0, body[:, -1].astype(int)

order = np.random.default_rng(seed=7).permutation(len(labels))
n_test = int(len(labels) * args.test_fraction)
splits = {"test": order[:n_test], "train": order[n_test:]}

os.makedirs(args.output, exist_ok=True)
for split, index in splits.items():
    with open(os.path.join(args.output, f"{split}.csv"), "w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(header)
        for x, y in zip(features[index], labels[index], strict=True):
            writer.writerow([f"{v:.4f}" for v in x] + [int(y)])
print(f"prepared {len(splits['train'])} training and {len(splits['test'])} test rows")
