#!/usr/bin/env bash
# Rewrite constraints.txt from the active environment, once the test suite has passed in it:
#   . .venv/bin/activate && POSTTRAIN_UNPINNED=1 bash install.sh dev && bash .ci/run && bash scripts/pin_versions.sh
# torch is left out (install.sh pins the CPU build; a GPU machine keeps its own), so is posttrain.
set -euo pipefail
cd "$(dirname "$0")/.."
{
  echo "# The exact versions CI passed with; install.sh and .ci/run install with -c constraints.txt."
  echo "# Written by scripts/pin_versions.sh (pip freeze, less posttrain and torch). Python $(python -c 'import platform; print(platform.python_version())')."
  python -m pip freeze --exclude-editable --exclude torch --exclude posttrain
} > constraints.txt
echo "constraints.txt: $(grep -vc '^#' constraints.txt) pins"
