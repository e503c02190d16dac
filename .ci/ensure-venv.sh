#!/usr/bin/env bash
# Run .venv-setup.sh when .venv is missing or the set-up inputs changed since it last ran.
set -euo pipefail
cd "$(dirname "$0")/.."
stamp=.venv/.setup-stamp
want=$(cat requirements.txt .venv-setup.sh | sha256sum | cut -d' ' -f1)
if [ ! -x .venv/bin/python ] || [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
  bash .venv-setup.sh
  echo "$want" > "$stamp"
fi
