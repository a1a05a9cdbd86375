#!/usr/bin/env bash
# The paper's 512-px protocol on IDRiD-S + the Kaggle/EyePACS subset (Tables 1 and 2, the t-test;
# 50 epochs, 3 runs, Adam 1e-5, BCE) on a GPU host with JAX, where TensorFlow, papermill and Jupyter
# may be absent. See the README's "GPU run" section.
#
# Once, on a machine where the project is installed (copies the data into the git-ignored gpu_data/,
# masks losslessly re-compressed, HED's VGG16 weights as float16, and the Keras wheels):
#     python -m mtunet.commands.gpu_protocol prepare --data-dir ../shared/data --out gpu_data --wheels
# Then on the GPU host, from the repository root (gpu_data/ must travel with the checkout):
#     scripts/gpu_paper_idrid.sh check       # data + arguments + how much compute the protocol needs
#     scripts/gpu_paper_idrid.sh [run]       # train and score; results/paper-idrid/
# Any option of `python -m mtunet.commands.gpu_protocol run --help` can follow (e.g. --epochs 20 --runs 1).
# By default no training run starts after MAX_MINUTES=6.5 minutes (the rest of an 8-minute slot is
# for the run in progress and the scoring); rerunning continues from the cached runs.
set -euo pipefail
cd "$(dirname "$0")/.."

export KERAS_BACKEND="${KERAS_BACKEND:-jax}"
export PYTHONPATH="$PWD/lib${PYTHONPATH:+:$PYTHONPATH}"
export MTUNET_DATA_WORKERS="${MTUNET_DATA_WORKERS:-8}"   # threads decoding and augmenting images
PYTHON="${PYTHON:-python3}"
DATA="${GPU_DATA:-gpu_data}"

command="run"
case "${1:-}" in
  run|check) command="$1"; shift ;;
  ""|-*) ;;
  *) echo "usage: $0 [run|check] [options of python -m mtunet.commands.gpu_protocol run]" >&2; exit 2 ;;
esac

if ! "$PYTHON" -c "import keras, yaml" 2>/dev/null; then
  if compgen -G "$DATA/wheels/*.whl" >/dev/null; then
    site="${TMPDIR:-/tmp}/mtunet-site"
    "$PYTHON" -m pip install -q --no-index --no-deps --no-compile --upgrade --target "$site" "$DATA"/wheels/*.whl
    export PYTHONPATH="$PYTHONPATH:$site"
  else
    echo "error: Keras is not installed and $DATA/wheels/ holds no wheels; run" >&2
    echo "  python -m mtunet.commands.gpu_protocol prepare --out $DATA --wheels   (where pip can download)" >&2
    exit 2
  fi
fi

if [ "$command" = run ]; then
  exec "$PYTHON" -m mtunet.commands.gpu_protocol run --data-dir "$DATA/data" --max-minutes "${MAX_MINUTES:-6.5}" "$@"
fi
exec "$PYTHON" -m mtunet.commands.gpu_protocol check --data-dir "$DATA/data" --max-minutes "${MAX_MINUTES:-8}" "$@"
