#!/usr/bin/env bash
# The whole test suite (Python and, where GNU Octave is installed, the MATLAB wrappers); CI runs it as
# `REQUIRE_OCTAVE=1 ./test.sh -q -p no:cacheprovider`. Sets itself up on first use. Extra arguments go to
# pytest (e.g. -k wav2vec2).
#   ./test.sh                 everything
#   ./test.sh -m "not slow"   the fast tier, for while you wait (under 3 minutes on 2 cores): leaves out the
#                             tests marked slow (they start the scripts, Octave, torchrun or pip as
#                             subprocesses, or take more than a few seconds)
# A test still running after 15 minutes fails, naming the subprocesses it left running (pytest-timeout,
# pyproject.toml; --timeout N changes the limit).
set -euo pipefail
cd "$(dirname "$0")"
bash .ci/ensure-venv.sh
if ! command -v octave-cli >/dev/null 2>&1; then
  echo "[test] octave-cli not found: the MATLAB wrapper tests will be skipped (apt-get install octave)"
fi
exec .venv/bin/python -m pytest tests "$@"
