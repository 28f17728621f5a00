"""Times the MLflow tracking REST API of one server, with the standard library only: a
keep-alive connection, bodies built before the clock starts.

    python tracking_driver.py URL TOKEN ROUNDS HISTORY_POINTS

Prints one JSON line: log-batch round trips (ms, p50/p99), points per second, and the time to
read back a history of HISTORY_POINTS points.
"""
import http.client, json, sys, time, urllib.parse

url, token, rounds, history_points = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
u = urllib.parse.urlparse(url)
conn = http.client.HTTPConnection(u.hostname, u.port)
headers = {"Content-Type": "application/json"}
if token:
    headers["Authorization"] = "Bearer " + token


def call(method, path, body=None):
    conn.request(method, path, body=json.dumps(body) if isinstance(body, dict) else body, headers=headers)
    r = conn.getresponse()
    data = r.read()
    if r.status != 200:
        raise SystemExit(f"{method} {path}: {r.status} {data[:300]!r}")
    return json.loads(data) if data else {}


exp = call("POST", "/api/2.0/mlflow/experiments/create", {"name": f"bench-{time.time_ns()}"})["experiment_id"]
run = call("POST", "/api/2.0/mlflow/runs/create", {"experiment_id": exp, "start_time": 0})["run"]["info"]["run_id"]
now = int(time.time() * 1000)


def batch(i, key):
    metrics = [{"key": key, "value": j * 0.5, "timestamp": now + j, "step": i * 1000 + j} for j in range(1000)]
    return json.dumps({"run_id": run, "metrics": metrics})


bodies = [batch(i, "loss") for i in range(rounds)]
times = []
for b in bodies:
    t = time.perf_counter()
    call("POST", "/api/2.0/mlflow/runs/log-batch", b)
    times.append((time.perf_counter() - t) * 1000)
times.sort()
# The history to read back: HISTORY_POINTS points of one metric.
for i in range(history_points // 1000):
    call("POST", "/api/2.0/mlflow/runs/log-batch", batch(i, "hist"))
t = time.perf_counter()
h = call("GET", f"/api/2.0/mlflow/metrics/get-history?run_id={run}&metric_key=hist")
read_s = time.perf_counter() - t
assert len(h["metrics"]) == history_points, len(h["metrics"])
print(json.dumps({
    "batch_p50_ms": times[len(times) // 2],
    "batch_p99_ms": times[min(len(times) - 1, int(len(times) * 0.99))],
    "points_per_s": 1000 * len(times) / (sum(times) / 1000),
    "history_points": history_points,
    "history_read_s": read_s,
}))
