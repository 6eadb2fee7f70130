#!/usr/bin/env bash
# Validate this model repository: configs (Triton's ModelConfig schema), model files, tensors,
# ensembles, unique names. Prints each problem with its file and exits non-zero on any.
#   validate_models.sh [--live] [--repository DIR] [--timeout S]
# --live also serves the repository with the embedded Triton server and checks every model
# is READY. Same as `satwatch validate`. Python: $PYTHON, else the checkout's .venv, else python3.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
repository="$(dirname "$here")"
python="${PYTHON:-}"
if [[ -z "$python" ]]; then
  if [[ -x "$repository/../.venv/bin/python" ]]; then
    python="$repository/../.venv/bin/python"
  else
    python="python3"
  fi
fi
export SATWATCH_REPOSITORY="${SATWATCH_REPOSITORY:-$repository}"
exec "$python" -m satwatch validate "$@"
