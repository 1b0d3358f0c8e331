#!/usr/bin/env bash
# The prepared accelerator check (benchmarks/accelerator_check.py), for the day a GPU or TPU host
# is available: ViT-B/16 MGP and BFT step benchmarks (bf16: images/s, MFU, peak memory), a
# 200-step BFT run of livt_jax.main with configs/imagenet_lt.py's shapes on generated images,
# and the deviceless AOT plan's prediction for the same devices; one JSON. Under 8 minutes.
#
#   bash launch/accelerator_check.sh [OUT.json] [--tiny] [--plan=h100:1]
#
# Needs the venv (launch/setup.sh) with the accelerator's jax (GPU: .venv/bin/pip install
# "jax[cuda12]==0.10.2"; the plan then uses that plugin; TPU VM: libtpu in the venv).
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=${1:-runs/accelerator_check_$(date +%Y%m%d_%H%M%S).json}
shift || true
exec timeout 480 .venv/bin/python -m benchmarks.accelerator_check --out="$OUT" "$@"
