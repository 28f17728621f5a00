#!/usr/bin/env bash
# Berth's main job on the embedded default, from a fresh checkout: build, start a server with
# a temporary home, apply the seed's instance types, create the datastore, attach the seed's
# compute, run the seed's training job to completion with its log streamed, download the
# model, register it, serve it behind the seed's endpoint and deployment, answer a request,
# and stop the server. Exits non-zero if any step fails.
set -euo pipefail
cd "$(dirname "$0")/.."

command -v python >/dev/null || command -v python3 >/dev/null || { apt-get update && apt-get install -y python3 python-is-python3; }
# uv builds the conda files of jobs and deployments into virtual environments.
command -v uv >/dev/null || python3 -m pip install --quiet uv || python3 -m pip install --quiet --break-system-packages uv
cargo build --release
berth="$PWD/target/release/berth"
export BERTH_HOME="${BERTH_HOME:-$(mktemp -d)}"
log="$BERTH_HOME/server.log"

"$berth" server --api-listen 127.0.0.1:0 --scoring-listen 127.0.0.1:0 2>"$log" &
server=$!
trap 'kill $server 2>/dev/null; wait $server 2>/dev/null || true' EXIT
until grep -q "berth server ready" "$log"; do
  kill -0 $server 2>/dev/null || { cat "$log"; exit 1; }
  sleep 0.1
done
grep "berth server ready" "$log"

cd examples/seed
"$berth" instance-type apply -f instance-types.yaml
"$berth" datastore create --name mydata --path ./data
"$berth" compute attach --type local --name aks-compute

# The seed asks for gpu-training (1 GPU). Without a GPU here, run it on cpu-small instead.
set_type=()
if ! nvidia-smi -L >/dev/null 2>&1; then
  echo "(no GPU on this machine: running the seed's job with --set resources.instance_type=cpu-small)"
  set_type=(--set resources.instance_type=cpu-small)
fi
"$berth" job create --file training-job.yaml --name "quickstart-$$" "${set_type[@]}" --stream
"$berth" job show --name "quickstart-$$"
out=$(mktemp -d)
"$berth" job download --name "quickstart-$$" --output-name model --download-path "$out"
echo "model: $(tr -d '\n ' < "$out/named-outputs/model/model.json" | cut -c1-120)"

# Serve the model the job just trained.
"$berth" model create --name my-model --version 1 --path "$out/named-outputs/model"
"$berth" online-endpoint create --file endpoint.yaml
"$berth" online-deployment create --file deployment.yaml --all-traffic
"$berth" online-endpoint invoke --name my-model-endpoint --request-file sample-request.json
uri=$("$berth" online-endpoint show --name my-model-endpoint --query scoring_uri -o tsv)
echo "scoring URI: $uri (key: berth online-endpoint get-credentials --name my-model-endpoint)"
