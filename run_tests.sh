#!/usr/bin/env bash
# The whole test suite, on a fresh machine: creates/reuses .venv, installs, then runs
#   1. every unit/integration test on the default TensorFlow backend,
#   2. the model/loss/metric subset again on JAX (tests marked `backend`),
#   3. the nbval regression notebooks (tests/regression/*.ipynb): the smoke profile re-executed,
#      cells marked NBVAL_CHECK_OUTPUT compared with the stored outputs,
#   4. run_all.sh --profile smoke in a temporary copy of the project (every table and figure made;
#      it reuses the smoke training runs step 3 left in runs/smoke, so CI trains them once),
#   5. the paper profile's miniature (profiles/paper-miniature.yaml, tests marked `miniature`) on
#      the real data in a temporary copy, and the GPU script's miniature under JAX; skipped with a
#      message where ../shared/data (or $MTUNET_DATA_DIR) is absent.
# Extra arguments go to the first pytest call (e.g. ./run_tests.sh -k data -x).
set -euo pipefail
cd "$(dirname "$0")"
source scripts/setup_env.sh

status=0
echo "== [1/5] pytest, KERAS_BACKEND=tensorflow"
KERAS_BACKEND=tensorflow python -m pytest tests -q --ignore=tests/test_run_all_smoke.py \
  -m "not miniature" "$@" || status=$?

echo "== [2/5] pytest -m backend, KERAS_BACKEND=jax"
KERAS_BACKEND=jax python -m pytest tests -q -m "backend and not miniature" -p no:cacheprovider \
  --ignore=tests/test_run_all_smoke.py || status=$?

echo "== [3/5] nbval regression notebooks (smoke profile)"
KERAS_BACKEND=tensorflow python -m pytest -q -p no:cacheprovider --nbval-lax --nbval-current-env \
  --nbval-sanitize-with tests/regression/sanitize.cfg tests/regression/*.ipynb || status=$?

echo "== [4/5] run_all.sh --profile smoke in a temporary copy"
KERAS_BACKEND=tensorflow python -m pytest -q -p no:cacheprovider tests/test_run_all_smoke.py || status=$?

echo "== [5/5] pytest -m miniature: the paper profile's miniature on the real data"
KERAS_BACKEND=tensorflow python -m pytest tests -q -p no:cacheprovider -m miniature \
  --ignore=tests/test_run_all_smoke.py || status=$?
exit $status
