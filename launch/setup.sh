#!/usr/bin/env bash
# Sets up a fresh machine: Debian's Fashion-MNIST (the embedded default data) and a Python venv
# in .venv with the pinned CPU stack. Idempotent: a second run only checks.
set -euo pipefail
cd "$(dirname "$0")/.."
if [ ! -e /usr/share/datasets/fashion-mnist/train-images-idx3-ubyte.gz ]; then
  SUDO=$([ "$(id -u)" = 0 ] || echo sudo)
  $SUDO apt-get update -qq
  $SUDO apt-get install -y -qq dataset-fashion-mnist
fi
PY=${PYTHON:-python3}
[ -x .venv/bin/python ] || "$PY" -m venv .venv
.venv/bin/python -m pip install -q --upgrade pip
.venv/bin/python -m pip install -q -r requirements.txt
# libtpu, for the AOT plan (`--aot=v5e:4x4`: compile for TPU slices on this host) and its tests:
# installed into .libtpu, outside the venv (in the venv, every jax start would try the TPU
# backend); a 213 MB wheel, ~690 MB unpacked. LIVT_SKIP_LIBTPU=1 skips it.
LIBTPU_VERSION=$(sed -n 's/^libtpu==//p' requirements-tpu-aot.txt)
if [ "${LIVT_SKIP_LIBTPU:-0}" != 1 ] && [ ! -d ".libtpu/libtpu-$LIBTPU_VERSION.dist-info" ]; then
  rm -rf .libtpu
  .venv/bin/python -m pip install -q --target .libtpu -r requirements-tpu-aot.txt
fi
# torch + timm (requirements-benchmark.txt) in .venv-torch, apart from .venv (the run never
# imports torch: livt_jax.interop reads and writes .pth/.safetensors itself): the PyTorch
# reference side of tests/test_interop_torch.py, which runs it as a subprocess. The regular
# PyPI builds, ~5.5 GB, ~1 min here. LIVT_SKIP_TORCH=1 skips it (those tests then fail).
TORCH_PINS=$(sha1sum requirements-benchmark.txt | cut -c1-12)
if [ "${LIVT_SKIP_TORCH:-0}" != 1 ] && [ "$(cat .venv-torch/.livt-pins 2>/dev/null)" != "$TORCH_PINS" ]; then
  [ -x .venv-torch/bin/python ] || "$PY" -m venv .venv-torch
  .venv-torch/bin/python -m pip install -q -r requirements-benchmark.txt
  echo "$TORCH_PINS" > .venv-torch/.livt-pins
fi
