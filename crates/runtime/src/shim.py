# Berth's scoring shim: one worker process. Imports the user's score.py, calls init() once,
# then serves run() calls from the Berth runtime over a Unix socket. Standard library only.
# Frames: 4-byte big-endian length, then UTF-8 JSON.
import importlib.util
import inspect
import json
import os
import socket
import struct
import sys
import traceback


def send(sock, obj):
    data = json.dumps(obj).encode("utf-8")
    sock.sendall(struct.pack(">I", len(data)) + data)


def recv(sock):
    head = b""
    while len(head) < 4:
        chunk = sock.recv(4 - len(head))
        if not chunk:
            return None
        head += chunk
    (n,) = struct.unpack(">I", head)
    body = bytearray()
    while len(body) < n:
        chunk = sock.recv(min(1 << 20, n - len(body)))
        if not chunk:
            return None
        body += chunk
    return json.loads(body.decode("utf-8"))


def last_line(exc):
    lines = traceback.format_exception_only(type(exc), exc)
    return lines[-1].strip() if lines else repr(exc)


def main():
    sock_path, script = sys.argv[1], sys.argv[2]
    script_dir = os.path.dirname(os.path.abspath(script))
    if script_dir not in sys.path:
        sys.path.insert(0, script_dir)
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    if sock_path.startswith("abstract:"):
        sock_path = "\0" + sock_path[len("abstract:"):]
    sock.connect(sock_path)
    try:
        spec = importlib.util.spec_from_file_location("score", script)
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        for fn in ("init", "run"):
            if not callable(getattr(module, fn, None)):
                raise AttributeError(f"{os.path.basename(script)} does not define {fn}()")
        module.init()
    except BaseException as exc:  # noqa: BLE001 - every failure must reach the runtime
        traceback.print_exc()
        sys.stderr.flush()
        send(sock, {"init_error": last_line(exc)})
        return 3
    run = module.run
    try:
        wants_headers = "request_headers" in inspect.signature(run).parameters
    except (TypeError, ValueError):
        wants_headers = False
    send(sock, {"ready": True})
    while True:
        req = recv(sock)
        if req is None:
            return 0
        try:
            if wants_headers:
                result = run(req["body"], request_headers=req.get("headers", {}))
            else:
                result = run(req["body"])
        except BaseException as exc:  # noqa: BLE001
            traceback.print_exc()
            sys.stderr.flush()
            send(sock, {"ok": False, "kind": "exception", "error": last_line(exc)})
            continue
        try:
            output = json.dumps(result)
        except (TypeError, ValueError) as exc:
            send(sock, {"ok": False, "kind": "not_serializable", "error": f"run() returned a value that is not JSON-serializable: {exc}"})
            continue
        send(sock, {"ok": True, "output": output})


if __name__ == "__main__":
    sys.exit(main())
