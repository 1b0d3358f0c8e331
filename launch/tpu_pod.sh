#!/usr/bin/env bash
# Runs LiVT on every worker of a Cloud TPU VM pod slice: the same command on all hosts.
# jax.distributed.initialize() discovers the pod by itself (livt_jax/distributed.py).
#
#   launch/tpu_pod.sh TPU_NAME ZONE configs/inat18.py gs://bucket/runs/inat18 [--config.x=y ...]
#
# Data and workdir must be reachable from every worker (a GCS bucket or a shared disk).
set -euo pipefail
TPU_NAME=$1 ZONE=$2 CONFIG=$3 WORKDIR=$4
shift 4
cd "$(dirname "$0")/.."
# Ship this checkout (without venvs and runs) to every worker.
tar --exclude=.venv --exclude=.venv-bench --exclude=runs -czf /tmp/livt_jax.tgz .
gcloud compute tpus tpu-vm scp /tmp/livt_jax.tgz "$TPU_NAME":livt_jax.tgz --zone="$ZONE" --worker=all
gcloud compute tpus tpu-vm ssh "$TPU_NAME" --zone="$ZONE" --worker=all --command="
  set -e
  mkdir -p livt_jax && tar -xzf livt_jax.tgz -C livt_jax
  cd livt_jax
  bash launch/setup.sh
  .venv/bin/pip install -q 'jax[tpu]==0.10.2'
  .venv/bin/python -m livt_jax.main --config=$CONFIG --workdir=$WORKDIR $*
"
