"""Makes examples/onnx/model/model.onnx: a small, fixed two-layer MLP (3 → 4 → 2).

Run with the `onnx` and `numpy` packages installed:  python make_model.py
It also writes sample-request.json and expected-output.json (numpy's answer), which the
tests compare Berth's native ONNX runtime against.
"""

import json
import os

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

HERE = os.path.dirname(os.path.abspath(__file__))

w1 = np.array([[0.5, -1.0, 0.25, 2.0], [1.5, 0.5, -0.75, 0.0], [-0.5, 1.0, 1.0, -1.5]], dtype=np.float32)
b1 = np.array([0.1, -0.2, 0.3, 0.0], dtype=np.float32)
w2 = np.array([[1.0, -0.5], [0.25, 0.75], [-1.0, 1.25], [0.5, 0.5]], dtype=np.float32)
b2 = np.array([0.05, -0.05], dtype=np.float32)

graph = helper.make_graph(
    [
        helper.make_node("Gemm", ["x", "w1", "b1"], ["h"]),
        helper.make_node("Relu", ["h"], ["hr"]),
        helper.make_node("Gemm", ["hr", "w2", "b2"], ["y"]),
    ],
    "berth-example-mlp",
    [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 3])],
    [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 2])],
    [numpy_helper.from_array(w1, "w1"), numpy_helper.from_array(b1, "b1"), numpy_helper.from_array(w2, "w2"), numpy_helper.from_array(b2, "b2")],
)
model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)], producer_name="berth")
model.ir_version = 8
onnx.checker.check_model(model)
onnx.save(model, os.path.join(HERE, "model", "model.onnx"))

x = np.array([[1.0, 2.0, 3.0], [-1.0, 0.5, 0.0], [0.0, 0.0, 0.0]], dtype=np.float32)
y = np.maximum(x @ w1 + b1, 0) @ w2 + b2
with open(os.path.join(HERE, "sample-request.json"), "w") as f:
    json.dump({"data": x.tolist()}, f)
with open(os.path.join(HERE, "expected-output.json"), "w") as f:
    json.dump({"y": y.tolist()}, f)
print("wrote model/model.onnx, sample-request.json, expected-output.json")
