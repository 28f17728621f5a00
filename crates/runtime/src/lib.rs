//! Berth's scoring runtime (`berth runtime`): serves one deployment replica, hosting a
//! Python `score.py` in a worker pool or an ONNX model natively. It arrives with online
//! endpoints.
