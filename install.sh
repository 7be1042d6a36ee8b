#!/usr/bin/env bash
# Install posttrain into the active Python environment.
#   bash install.sh          # the library and CLI
#   bash install.sh dev      # plus test tools and TRL (for parity tests and benchmarks)
# On a machine without an NVIDIA GPU, torch is pinned to the CPU build 2.13.0 first, so nothing
# pulls multi-GB CUDA packages. A machine with a GPU (or an existing torch) keeps its own torch.
set -euo pipefail
cd "$(dirname "$0")"
extra="${1:-}"
PY="${PYTHON:-python3}"

if ! "$PY" -c "import torch" >/dev/null 2>&1; then
  if command -v nvidia-smi >/dev/null 2>&1 && nvidia-smi -L >/dev/null 2>&1; then
    echo "install.sh: NVIDIA GPU found; installing the default CUDA build of torch"
    "$PY" -m pip install "torch>=2.4"
  else
    echo "install.sh: no GPU; installing the CPU build torch==2.13.0"
    "$PY" -m pip install "torch==2.13.0"
  fi
fi

if [ -n "$extra" ]; then
  "$PY" -m pip install -e ".[$extra]"
else
  "$PY" -m pip install -e .
fi
