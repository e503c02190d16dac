#!/usr/bin/env bash
# The whole test suite (Python and, where GNU Octave is installed, the MATLAB wrappers).
# Sets itself up on first use. Extra arguments go to pytest (e.g. -k wav2vec2).
set -euo pipefail
cd "$(dirname "$0")"
bash .ci/ensure-venv.sh
if ! command -v octave-cli >/dev/null 2>&1; then
  echo "[test] octave-cli not found: the MATLAB wrapper tests will be skipped (apt-get install octave)"
fi
exec .venv/bin/python -m pytest tests "$@"
