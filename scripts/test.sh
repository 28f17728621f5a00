#!/usr/bin/env bash
# The tests, from a fresh machine: installs what they need (Python with uv, Chromium and
# chromedriver, PostgreSQL; each only when missing), then runs `cargo test --workspace`.
# Extra arguments go to cargo test (`scripts/test.sh -p berth-store`).
set -euo pipefail
cd "$(dirname "$0")/.."

# The end-to-end tests run the seed's `python train.py` and a Python memory hog.
if ! command -v python >/dev/null || ! command -v python3 >/dev/null; then
  apt-get update && apt-get install -y python3 python-is-python3
fi
# A replica run as another user (--run-as nobody) cannot reach root's pyenv: it needs the
# system's python3.
if [ ! -x /usr/bin/python3 ]; then
  apt-get update && apt-get install -y python3
fi
# Environments are built with uv (from PyPI); the tests install real packages with it.
if ! command -v uv >/dev/null; then
  python3 -m pip install --quiet uv || python3 -m pip install --quiet --break-system-packages uv
fi
# The studio's tests drive Debian's headless Chromium through chromedriver.
if ! command -v chromium >/dev/null || ! command -v chromedriver >/dev/null; then
  apt-get update && apt-get install -y chromium chromium-driver
fi
# The store's tests (and the server's on PostgreSQL) start their own PostgreSQL cluster from
# Debian's package (initdb as the `postgres` user the package makes).
if ! ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1; then
  apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y postgresql
fi
cargo test --workspace "$@"
