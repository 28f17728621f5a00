"""Scoring script for the seed's deployment: serves the linear model train.py writes.

init() loads model/model.json from AZUREML_MODEL_DIR (a model registered from a folder named
`model` keeps that name beneath it, as on Azure); run() takes {"data": [[x1, x2], ...]} and
returns {"predictions": [...], "variant": $MODEL_VARIANT}. Standard library only.
"""

import json
import os

model = None


def init():
    global model
    with open(os.path.join(os.environ["AZUREML_MODEL_DIR"], "model", "model.json")) as f:
        model = json.load(f)


def run(raw_data):
    rows = json.loads(raw_data)["data"]
    w, b = model["weights"], model["bias"]
    predictions = [sum(wi * xi for wi, xi in zip(w, row)) + b for row in rows]
    return {"predictions": predictions, "variant": os.environ.get("MODEL_VARIANT", "blue")}
