#!/usr/bin/env bash
# Tries install paths in fresh venvs under a scratch dir and prints each one's time and size:
#   setup     bash launch/setup.sh --no-data, in a copy of this checkout's files (the run only)
#   editable  pip install -e .
#   torch     pip install -e '.[torch]'
#   tests     bash launch/setup.sh --tests --no-data, in a copy of this checkout (CI's set-up)
# Each venv then dry-runs the embedded default's config with the installed code (the `livt-jax`
# command for the editable ones, from outside the checkout); torch also imports timm. The scratch
# dir is deleted after. Needs network (PyPI) and a few GB of disk for torch.
#
#   bash launch/check_install.sh [--json FILE] [setup] [editable] [torch]    (all three by default)
#
# --json FILE records the figures with the host, load and commit (benchmarks/install_table.py;
# docs/install.md's table is made from the files under benchmarks/results/install/).
set -euo pipefail
cd "$(dirname "$0")/.."
REPO=$PWD
PY=${PYTHON:-python3}
command="bash launch/check_install.sh $*"
json=
if [ "${1:-}" = --json ]; then
  [ -n "${2:-}" ] || { echo "launch/check_install.sh: error: --json needs a file name" >&2; exit 2; }
  json=$2
  shift 2
fi
load_before=$(cut -d' ' -f1-3 /proc/loadavg | tr ' ' ,)
# What the figures depend on, taken before anything is installed: the code, and how much pip
# already has in its cache (a warm cache skips the downloads).
commit=$(git rev-parse HEAD)
[ -z "$(git status --porcelain -- . ':!benchmarks/results')" ] || commit="$commit+dirty"
pip_cache=$("$PY" -m pip cache dir 2>/dev/null || echo "$HOME/.cache/pip")
pip_cache_bytes=$( (du -sb "$pip_cache" 2>/dev/null || echo 0) | cut -f1)
paths=("$@")
[ ${#paths[@]} -gt 0 ] || paths=(setup editable torch)
scratch=$(mktemp -d)
trap 'rm -rf "$scratch"' EXIT

timed() {  # timed LABEL DIR CMD...: runs CMD, prints the seconds it took and DIR's size
  local label=$1 dir=$2 start
  shift 2
  start=$(date +%s)
  "$@" > "$scratch/$label.log" 2>&1 || { cat "$scratch/$label.log"; echo "$label: FAILED"; exit 1; }
  echo "$label: $(($(date +%s) - start)) s, $(du -sh "$dir" | cut -f1)"
  printf '%s\t%s\t%s\n' "$label" "$(($(date +%s) - start))" "$(du -sb "$dir" | cut -f1)" \
    >> "$scratch/results.tsv"
}

dry_run() {  # dry_run COMMAND...: the default config's dry run, from outside the checkout
  (cd "$scratch" && "$@" --config="$REPO/configs/fashion_mnist_lt.py" --dry_run | tail -1)
}

for path in "${paths[@]}"; do
  case $path in
    setup)
      mkdir "$scratch/checkout"
      git ls-files -z | xargs -0 cp --parents -t "$scratch/checkout"
      timed "setup --no-data (.venv)" "$scratch/checkout/.venv" \
        bash "$scratch/checkout/launch/setup.sh" --no-data
      (cd "$scratch/checkout" && .venv/bin/python -m livt_jax.main \
        --config=configs/fashion_mnist_lt.py --dry_run | tail -1)
      rm -rf "$scratch/checkout" ;;
    tests)
      mkdir "$scratch/checkout"
      git ls-files -z | xargs -0 cp --parents -t "$scratch/checkout"
      timed "setup --tests --no-data (.venv, .libtpu, .cuda-aot, .venv-torch)" \
        "$scratch/checkout" bash "$scratch/checkout/launch/setup.sh" --tests --no-data
      (cd "$scratch/checkout" && .venv-torch/bin/python -c 'import timm, torch' \
        && .venv/bin/python -m pytest --version)
      rm -rf "$scratch/checkout" ;;
    editable | torch)
      extra=$([ "$path" = torch ] && echo '[torch]' || true)
      "$PY" -m venv "$scratch/$path"
      "$scratch/$path/bin/python" -m pip install -q --upgrade pip
      timed "pip install -e '.$extra'" "$scratch/$path" \
        "$scratch/$path/bin/python" -m pip install -q -e ".$extra"
      dry_run "$scratch/$path/bin/livt-jax"
      if [ "$path" = torch ]; then
        "$scratch/$path/bin/python" -c 'import timm, torch; print("torch", torch.__version__)'
      fi
      rm -rf "${scratch:?}/$path" ;;
    *) echo "launch/check_install.sh: error: unknown path '$path' (setup, editable, torch, tests)" >&2
       exit 2 ;;
  esac
done
if [ -n "$json" ]; then
  "$PY" -m benchmarks.install_table --record "$scratch/results.tsv" --json "$json" \
    --command "$command" --load_before "$load_before" --commit "$commit" \
    --pip_cache_bytes "$pip_cache_bytes"
fi
