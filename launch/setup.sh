#!/usr/bin/env bash
# Sets up this checkout for a run: a Python venv in .venv with the run's pinned stack
# (requirements.txt) and Debian's Fashion-MNIST (the embedded default's data, with apt-get when
# absent). Flags add or drop parts (docs/install.md):
#   --tests    also what the test suite needs: requirements-dev.txt (pytest, shellcheck, the
#              storage emulator) in .venv, libtpu in .libtpu and the CUDA PJRT plugin in
#              .cuda-aot (the AOT tests), torch + timm in .venv-torch (interop tests)
#   --tpu      jax[tpu] in .venv (requirements-tpu.txt): Cloud TPU VMs (launch/tpu_pod.sh)
#   --cuda12   jax[cuda12] in .venv (requirements-cuda12.txt): NVIDIA GPUs (launch/slurm.sbatch)
#   --no-data  no Fashion-MNIST (runs that read their data from TFDS dirs or gs://)
# PYTHON=... picks the interpreter that makes the venv (Python >= 3.11). Idempotent: a second
# run reinstalls nothing that is there.
set -euo pipefail
usage='usage: bash launch/setup.sh [--tests] [--tpu | --cuda12] [--no-data]'
TESTS=0 DATA=1 JAX_EXTRA=
for arg in "$@"; do
  case $arg in
    --tests) TESTS=1 ;;
    --no-data) DATA=0 ;;
    --tpu | --cuda12)
      if [ -n "$JAX_EXTRA" ] && [ "$JAX_EXTRA" != "${arg#--}" ]; then
        echo "launch/setup.sh: error: --tpu and --cuda12 exclude each other (one jax build)" >&2
        exit 2
      fi
      JAX_EXTRA=${arg#--} ;;
    *) echo "launch/setup.sh: error: unknown argument '$arg'; $usage" >&2; exit 2 ;;
  esac
done
cd "$(dirname "$0")/.."

if [ "$DATA" = 1 ] && [ ! -e /usr/share/datasets/fashion-mnist/train-images-idx3-ubyte.gz ]; then
  SUDO=$([ "$(id -u)" = 0 ] || echo sudo)
  $SUDO apt-get update -qq
  $SUDO apt-get install -y -qq dataset-fashion-mnist
fi

PY=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  if ! "$PY" -c 'import sys; sys.exit(sys.version_info < (3, 11))'; then
    echo "launch/setup.sh: error: $PY is not Python >= 3.11 (the pins need it): rerun with" \
      "PYTHON=/path/to/python3.11 bash launch/setup.sh $*" >&2
    exit 2
  fi
  "$PY" -m venv .venv
fi
requirements=(-r requirements.txt)
[ "$TESTS" = 1 ] && requirements+=(-r requirements-dev.txt)
[ -n "$JAX_EXTRA" ] && requirements+=(-r "requirements-$JAX_EXTRA.txt")
.venv/bin/python -m pip install -q --upgrade pip
.venv/bin/python -m pip install -q "${requirements[@]}"
[ "$TESTS" = 1 ] || exit 0

# libtpu, for the AOT plan (`--aot=v5e:4x4`: compile for TPU slices on this host) and its tests:
# installed into .libtpu, outside the venv (in the venv, every jax start would try the TPU
# backend); a 213 MB wheel, ~690 MB unpacked. LIVT_SKIP_LIBTPU=1 skips it.
LIBTPU_VERSION=$(sed -n 's/^libtpu==//p' requirements-tpu-aot.txt)
if [ "${LIVT_SKIP_LIBTPU:-0}" != 1 ] && [ ! -d ".libtpu/libtpu-$LIBTPU_VERSION.dist-info" ]; then
  rm -rf .libtpu
  .venv/bin/python -m pip install -q --target .libtpu -r requirements-tpu-aot.txt
fi
# The CUDA PJRT plugin, for GPU plans (`--aot=h100:8`: compile for NVIDIA GPUs on this host)
# and their tests: into .cuda-aot, outside the venv (in the venv, jax would start its CUDA
# backend); a 174 MB wheel, 458 MB unpacked, no nvidia-* libraries. LIVT_SKIP_CUDA_AOT=1 skips it.
CUDA_AOT_VERSION=$(sed -n 's/^jax-cuda12-pjrt==//p' requirements-gpu-aot.txt)
if [ "${LIVT_SKIP_CUDA_AOT:-0}" != 1 ] \
    && [ ! -d ".cuda-aot/jax_cuda12_pjrt-$CUDA_AOT_VERSION.dist-info" ]; then
  rm -rf .cuda-aot
  .venv/bin/python -m pip install -q --target .cuda-aot -r requirements-gpu-aot.txt
fi
# torch + timm (requirements-benchmark.txt) in .venv-torch, apart from .venv (the run never
# imports torch: livt_jax.interop reads and writes .pth/.safetensors itself): the PyTorch
# reference side of tests/test_interop_torch.py, which runs it as a subprocess. The regular
# PyPI builds, ~5.5 GB, ~1 min here. LIVT_SKIP_TORCH=1 skips it (those tests then fail).
TORCH_PINS=$(sha1sum requirements-benchmark.txt | cut -c1-12)
if [ "${LIVT_SKIP_TORCH:-0}" != 1 ] \
    && [ "$(cat .venv-torch/.livt-pins 2>/dev/null)" != "$TORCH_PINS" ]; then
  [ -x .venv-torch/bin/python ] || "$PY" -m venv .venv-torch
  .venv-torch/bin/python -m pip install -q -r requirements-benchmark.txt
  echo "$TORCH_PINS" > .venv-torch/.livt-pins
fi
