#!/usr/bin/env bash
# The whole test suite, on a fresh machine: creates/reuses .venv, installs, then runs
#   1. every unit/integration test on the default TensorFlow backend,
#   2. the model/loss/metric subset again on JAX (tests marked `backend`),
#   3. the nbval regression notebooks (tests/regression/*.ipynb), re-executed and compared.
# Extra arguments go to the first pytest call (e.g. ./run_tests.sh -k data -x).
set -euo pipefail
cd "$(dirname "$0")"
source scripts/setup_env.sh

status=0
echo "== [1/3] pytest, KERAS_BACKEND=tensorflow"
KERAS_BACKEND=tensorflow python -m pytest tests -q "$@" || status=$?

echo "== [2/3] pytest -m backend, KERAS_BACKEND=jax"
KERAS_BACKEND=jax python -m pytest tests -q -m backend -p no:cacheprovider || status=$?

shopt -s nullglob
notebooks=(tests/regression/*.ipynb)
if [ ${#notebooks[@]} -gt 0 ]; then
  echo "== [3/3] nbval regression notebooks (smoke profile)"
  KERAS_BACKEND=tensorflow python -m pytest -q -p no:cacheprovider --nbval-lax --nbval-current-env \
    --nbval-sanitize-with tests/regression/sanitize.cfg "${notebooks[@]}" || status=$?
else
  echo "== [3/3] no regression notebooks under tests/regression/"
fi
exit $status
