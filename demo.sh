#!/usr/bin/env bash
# The main job on the bundled demo audio: GE2E speaker embeddings (weights ship with resemblyzer,
# so no download) of data/*.wav -> Models/ge2e/<clip>.{npy,mat,json}. Sets itself up on first use.
# Extra arguments go to python/embed.py (e.g. --model wav2vec2 to download and run XLSR-53).
set -euo pipefail
cd "$(dirname "$0")"
bash .ci/ensure-venv.sh
exec .venv/bin/python python/embed.py data/*.wav --model ge2e --output-dir Models/ge2e "$@"
