#!/usr/bin/env bash
# Runs LiVT on this machine as N local JAX processes (CPU, gloo collectives) — the same code path
# as a multi-host pod, for trying out multi-process runs without one.
#
#   launch/local.sh 2 configs/fashion_mnist_lt.py runs/fmnist_2proc [--config.x=y ...]
#
# With N=1 it is the plain single-process run.
set -euo pipefail
if [ $# -lt 3 ] || ! [[ $1 =~ ^[1-9][0-9]*$ ]]; then
  echo "usage: launch/local.sh N_PROCESSES CONFIG WORKDIR [--config.FIELD=VALUE ...]" >&2
  exit 2
fi
cd "$(dirname "$0")/.."
N=$1 CONFIG=$2 WORKDIR=$3
shift 3
if [ "$N" = 1 ]; then
  exec .venv/bin/python -m livt_jax.main --config="$CONFIG" --workdir="$WORKDIR" "$@"
fi
PORT=$(.venv/bin/python -c 'import portpicker; print(portpicker.pick_unused_port())')
pids=()
for ((i = 0; i < N; i++)); do
  JAX_PLATFORMS=cpu LIVT_COORDINATOR_ADDRESS=localhost:$PORT LIVT_NUM_PROCESSES=$N \
    LIVT_PROCESS_ID=$i \
    .venv/bin/python -m livt_jax.main --config="$CONFIG" --workdir="$WORKDIR" "$@" \
    > >(sed "s/^/[process $i] /") 2>&1 &
  pids+=($!)
done
# The first failing process's exit status is ours (75: preempted, rerun to resume; 2: bad input).
status=0
for pid in "${pids[@]}"; do
  rc=0
  wait "$pid" || rc=$?
  [ "$status" != 0 ] || status=$rc
done
exit "$status"
