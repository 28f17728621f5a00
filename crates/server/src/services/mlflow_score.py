"""Berth's scoring script for MLflow models deployed without code.

init() loads the model under AZUREML_MODEL_DIR with mlflow.pyfunc.load_model. run() accepts
the request formats of MLflow's scoring server and of Azure ML: exactly one of input_data,
dataframe_split, dataframe_records, instances or inputs, with optional params. An input_data
request is answered with the predictions themselves, as Azure ML does; the others with
{"predictions": ...}, as MLflow does.
"""

import json
import os

model = None
FORMATS = ("input_data", "dataframe_split", "dataframe_records", "instances", "inputs")


def _model_path():
    root = os.environ["AZUREML_MODEL_DIR"]
    if os.path.isfile(os.path.join(root, "MLmodel")):
        return root
    for entry in sorted(os.listdir(root)):
        path = os.path.join(root, entry)
        if os.path.isfile(os.path.join(path, "MLmodel")):
            return path
    raise FileNotFoundError(f"no MLmodel file in {root} or the folders beneath it")


def init():
    global model
    import mlflow.pyfunc

    model = mlflow.pyfunc.load_model(_model_path())


def _column_names():
    schema = model.metadata.get_input_schema() if model.metadata else None
    if schema is None or schema.is_tensor_spec() or not schema.has_input_names():
        return None
    return schema.input_names()


def _convert(value):
    import numpy as np
    import pandas as pd

    if isinstance(value, dict):
        if "data" in value and ("columns" in value or "index" in value):
            return pd.DataFrame(**{k: value[k] for k in ("data", "columns", "index") if k in value})
        return {k: np.asarray(v) for k, v in value.items()}
    if isinstance(value, list) and value and all(isinstance(r, dict) for r in value):
        return pd.DataFrame.from_records(value)
    columns = _column_names()
    if columns and isinstance(value, list) and value and all(isinstance(r, list) for r in value):
        return pd.DataFrame(value, columns=columns)
    return np.asarray(value)


def _parse(body):
    import pandas as pd

    if not isinstance(body, dict):
        raise ValueError(f"the request must be a JSON object with one of {', '.join(FORMATS)}")
    keys = [k for k in FORMATS if k in body]
    if len(keys) != 1:
        raise ValueError(
            f"the request must have exactly one of {', '.join(FORMATS)}; it has "
            + (", ".join(keys) if keys else "none")
        )
    key = keys[0]
    value = body[key]
    if key == "dataframe_split":
        if not isinstance(value, dict):
            raise ValueError("dataframe_split must be an object with columns and data")
        return key, pd.DataFrame(**{k: value[k] for k in ("data", "columns", "index") if k in value})
    if key == "dataframe_records":
        return key, pd.DataFrame.from_records(value)
    return key, _convert(value)


def _jsonable(result):
    import numpy as np
    import pandas as pd

    if isinstance(result, pd.DataFrame):
        return result.to_dict(orient="records")
    if isinstance(result, (pd.Series, np.ndarray)):
        return result.tolist()
    if isinstance(result, np.generic):
        return result.item()
    if isinstance(result, dict):
        return {k: _jsonable(v) for k, v in result.items()}
    if isinstance(result, (list, tuple)):
        return [_jsonable(v) for v in result]
    return result


def run(raw_data):
    body = json.loads(raw_data)
    key, data = _parse(body)
    params = body.get("params")
    predictions = model.predict(data, params=params) if params else model.predict(data)
    out = _jsonable(predictions)
    return out if key == "input_data" else {"predictions": out}
