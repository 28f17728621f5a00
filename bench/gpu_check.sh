#!/usr/bin/env bash
# GPU check of the resource sampling (issue 11): on a machine with an NVIDIA GPU, runs a job
# that holds one GPU and shows its `system/gpu_*` metrics and the `/metrics` gauges.
# Usage: bench/gpu_check.sh <berth binary> [out folder]
set -uo pipefail
BIN=$(realpath "$1")
OUT=${2:-${OUT:-/tmp/gpu-check}}
mkdir -p "$OUT"
export BERTH_HOME=$(mktemp -d)
nvidia-smi --query-gpu=uuid,utilization.gpu,memory.used --format=csv,noheader,nounits | tee "$OUT/nvidia-smi.txt"
"$BIN" server --api-listen 127.0.0.1:0 --scoring-listen 127.0.0.1:0 >"$OUT/server.log" 2>&1 &
for _ in $(seq 100); do [ -f "$BERTH_HOME/server.json" ] && break; sleep 0.1; done
work=$(mktemp -d)
cd "$work"
cat > it.yaml <<'YAML'
apiVersion: amlarc.azureml.com/v1alpha1
kind: InstanceType
metadata:
  name: one-gpu
spec:
  resources:
    requests: {cpu: "1", memory: 1Gi, nvidia.com/gpu: 1}
    limits: {cpu: "2", memory: 2Gi, nvidia.com/gpu: 1}
YAML
"$BIN" instance-type apply -f it.yaml
printf 'command: sleep 25\nname: gpu_hold\nresources:\n  instance_type: one-gpu\n' > job.yml
"$BIN" compute show --name local -o json | tee "$OUT/compute.json"
"$BIN" job create --file job.yml
for _ in $(seq 60); do
  "$BIN" job show --name gpu_hold -o json > "$OUT/job.json"
  grep -q 'system/gpu_0_utilization_percentage' "$OUT/job.json" && break
  sleep 0.5
done
curl -s "$(python3 -c "import json,os;print(json.load(open(os.environ['BERTH_HOME']+'/server.json'))['api_url'])")/metrics" | grep berth_job_ > "$OUT/metrics.txt"
"$BIN" job metrics --name gpu_hold -o tsv > "$OUT/points.tsv"
cat "$OUT/job.json" | python3 -c "import json,sys; j=json.load(sys.stdin); print(j['status'], j.get('gpus'), json.dumps(j.get('metrics'), indent=1))"
cat "$OUT/metrics.txt"
"$BIN" job cancel --name gpu_hold >/dev/null
kill %1
