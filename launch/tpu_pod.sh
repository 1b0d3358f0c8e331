#!/usr/bin/env bash
# Runs LiVT on every worker of a Cloud TPU VM pod slice: the same command on all hosts.
# jax.distributed.initialize() discovers the pod by itself (livt_jax/runtime/distributed.py).
#
#   launch/tpu_pod.sh TPU_NAME ZONE configs/inat18.py gs://bucket/runs/inat18 [--config.x=y ...]
#
# Ships this checkout (no .git, venvs, .libtpu, .cuda-aot, runs/) to ~/livt_jax on every worker,
# sets each worker up with the run's pins plus jax[tpu] (launch/setup.sh --tpu --no-data: no torch,
# no Fashion-MNIST), then starts the run there. Rerunning the command after a preemption resumes
# from the last checkpoint. Data and WORKDIR must be reachable from every worker: gs:// or an
# absolute path on a shared disk. LIVT_WORKER_PYTHON=python3.11 names the workers' interpreter
# for their venv (Python >= 3.11; the default is their python3).
set -euo pipefail
if [ $# -lt 4 ]; then
  echo "usage: launch/tpu_pod.sh TPU_NAME ZONE CONFIG WORKDIR [--config.FIELD=VALUE ...]" >&2
  exit 2
fi
TPU_NAME=$1 ZONE=$2 CONFIG=$3 WORKDIR=$4
shift 4
case $WORKDIR in
  gs://* | /*) ;;
  *) echo "launch/tpu_pod.sh: error: WORKDIR '$WORKDIR' would be a different folder on each" \
       "worker: use a gs:// path or an absolute path on a disk every worker mounts" >&2
     exit 2 ;;
esac
cd "$(dirname "$0")/.."
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
tar --exclude=./.git --exclude='./.venv*' --exclude=./.libtpu --exclude=./.cuda-aot \
  --exclude=./runs -czf "$tmp/livt_jax.tgz" .
# The run's command quoted for the workers' shell (bash), so overrides keep spaces and commas.
run=$(printf '%q ' .venv/bin/python -m livt_jax.main "--config=$CONFIG" "--workdir=$WORKDIR" "$@")
setup=$(printf '%q ' ${LIVT_WORKER_PYTHON:+"PYTHON=$LIVT_WORKER_PYTHON"} bash launch/setup.sh \
  --tpu --no-data)
gcloud compute tpus tpu-vm scp "$tmp/livt_jax.tgz" "$TPU_NAME":livt_jax.tgz --zone="$ZONE" \
  --worker=all
gcloud compute tpus tpu-vm ssh "$TPU_NAME" --zone="$ZONE" --worker=all --command="set -e
mkdir -p livt_jax && tar -xzf livt_jax.tgz -C livt_jax
cd livt_jax
$setup
$run"
