"""Helpers shared by the training and comparison scripts."""

import csv
import os

import numpy as np


def load_split(folder, split):
    with open(os.path.join(folder, f"{split}.csv"), newline="") as fh:
        rows = list(csv.reader(fh))[1:]
    data = np.array(rows, dtype=float)
    return data[:, :-1], data[:, -1].astype(int)
