#!/usr/bin/env bash
# Environment build, side by side: Berth's way (uv venv + uv pip install) against
# python -m venv + pip install of the same list, cold (empty package caches) and with warm
# download caches; then a cached environment through a real server (job submit to the command
# running, with and without an environment). Prints one line per measurement.
# Usage: bench/env_build.sh [path to berth]   (needs uv and network access to PyPI)
set -euo pipefail
BERTH=${1:-target/release/berth}
PY=$(uv python find 3.11)
REQ="scikit-learn==1.5.2"
work=$(mktemp -d); trap 'rm -rf "$work"' EXIT
ms() { echo $(( ($(date +%s%N) - $1) / 1000000 )); }

run_uv() { # $1 cache dir
  local t=$(date +%s%N)
  UV_CACHE_DIR=$1 uv venv -q --relocatable --python "$PY" "$work/uv-env" && UV_CACHE_DIR=$1 uv pip install -q --python "$work/uv-env/bin/python" "$REQ"
  ms $t; rm -rf "$work/uv-env"
}
run_pip() { # $1 pip cache dir
  local t=$(date +%s%N)
  "$PY" -m venv "$work/pip-env" && PIP_CACHE_DIR=$1 "$work/pip-env/bin/pip" install -q --disable-pip-version-check "$REQ"
  ms $t; rm -rf "$work/pip-env"
}
echo "uv   cold (empty cache):  $(run_uv "$work/uvc1") ms"
echo "pip  cold (empty cache):  $(run_pip "$work/pipc1") ms"
echo "uv   warm download cache: $(run_uv "$work/uvc1") ms"
echo "pip  warm download cache: $(run_pip "$work/pipc1") ms"

# A cached environment through the server: submit -> command running, measured by the job itself.
export BERTH_HOME=$work/home
"$BERTH" server --api-listen 127.0.0.1:0 --scoring-listen 127.0.0.1:0 2>"$work/server.log" &
server=$!; trap 'kill $server 2>/dev/null; rm -rf "$work"' EXIT
until grep -q "ready" "$work/server.log"; do sleep 0.1; done
mkdir -p "$work/p"
printf 'dependencies:\n  - python=3.11\n  - pip:\n    - %s\n' "$REQ" > "$work/p/conda.yml"
printf 'command: python -c "import time; print(time.time_ns())"\nenvironment:\n  conda_file: conda.yml\n' > "$work/p/env-job.yml"
printf 'command: python -c "import time; print(time.time_ns())"\n' > "$work/p/plain-job.yml"
submit() { # prints ms from submit to the command's first line
  local t=$(date +%s%N)
  local out; out=$("$BERTH" job create --file "$1" --stream 2>/dev/null | grep -E '^[0-9]{19}$' | tail -1)
  echo $(( (out - t) / 1000000 ))
}
echo "first job with the environment (built by Berth): $(submit "$work/p/env-job.yml") ms to running"
for i in 1 2 3; do echo "job, cached environment: $(submit "$work/p/env-job.yml") ms to running"; done
for i in 1 2 3; do echo "job, no environment:      $(submit "$work/p/plain-job.yml") ms to running"; done
