#!/usr/bin/env bash
# The whole test suite, on a fresh machine: creates/reuses .venv, installs, then runs
#   1. every unit/integration test on the default TensorFlow backend,
#   2. the model/loss/metric subset again on JAX (tests marked `backend`),
#   3. the nbval regression notebooks (tests/regression/*.ipynb): the smoke profile re-executed,
#      cells marked NBVAL_CHECK_OUTPUT compared with the stored outputs,
#   4. run_all.sh --profile smoke in a temporary copy of the project (every table and figure made;
#      it reuses the smoke training runs step 3 left in runs/smoke, so CI trains them once),
#   5. the paper profile's miniature (profiles/paper-miniature.yaml, tests marked `miniature`) on
#      the real data in a temporary copy; skipped with a message where ../shared/data (or
#      $MTUNET_DATA_DIR) is absent.
# Steps 1-2 spread their tests over one pytest-xdist worker per core (at most 4; most tests keep
# one core busy). Step 5 shares nothing with steps 3-4 (its own copy, runs and results), so it
# runs beside them and its output follows step 4's (on 2 slow cores: 41 min for steps 3-5, not 54).
# MTUNET_TEST_WORKERS=N sets the worker count (1: no workers, one process as before).
# Extra arguments go to the first pytest call (e.g. ./run_tests.sh -k data -x).
set -euo pipefail
cd "$(dirname "$0")"
source scripts/setup_env.sh

workers="${MTUNET_TEST_WORKERS:-$(python -c 'import os; print(max(1, min(4, len(os.sched_getaffinity(0)))))')}"
case "$workers" in
  ''|*[!0-9]*|0) echo "error: MTUNET_TEST_WORKERS='$workers': expected a whole number of pytest workers, 1 or more (1: one process)" >&2
     exit 2 ;;
esac
spread=()
[ "$workers" -gt 1 ] && spread=(-n "$workers" --dist worksteal)

status=0
started=$SECONDS
stage_done() { echo "   ($(( (SECONDS - started) / 60 )) min since the tests began)"; }

echo "== [1/5] pytest, KERAS_BACKEND=tensorflow (${workers} worker(s))"
KERAS_BACKEND=tensorflow python -m pytest tests -q --ignore=tests/test_run_all_smoke.py \
  -m "not miniature" "${spread[@]}" "$@" || status=$?
stage_done

echo "== [2/5] pytest -m backend, KERAS_BACKEND=jax (${workers} worker(s))"
KERAS_BACKEND=jax python -m pytest tests -q -m "backend and not miniature" -p no:cacheprovider \
  --ignore=tests/test_run_all_smoke.py "${spread[@]}" || status=$?
stage_done

echo "== [5/5] starts now, beside [3/5] and [4/5]; its output follows theirs"
miniature_log="$(mktemp "${TMPDIR:-/tmp}/mtunet-miniature.XXXXXX")"
KERAS_BACKEND=tensorflow setsid python -m pytest tests -q -p no:cacheprovider -m miniature \
  --ignore=tests/test_run_all_smoke.py >"$miniature_log" 2>&1 &
miniature_pid=$!
# an interrupted or failed script takes the miniature (and the notebooks it started) with it
trap 'kill -- -"$miniature_pid" 2>/dev/null || true; rm -f "$miniature_log"' EXIT

echo "== [3/5] nbval regression notebooks (smoke profile)"
KERAS_BACKEND=tensorflow python -m pytest -q -p no:cacheprovider --nbval-lax --nbval-current-env \
  --nbval-sanitize-with tests/regression/sanitize.cfg tests/regression/*.ipynb || status=$?
stage_done

echo "== [4/5] run_all.sh --profile smoke in a temporary copy"
KERAS_BACKEND=tensorflow python -m pytest -q -p no:cacheprovider tests/test_run_all_smoke.py || status=$?
stage_done

echo "== [5/5] pytest -m miniature: the paper profile's miniature on the real data"
wait "$miniature_pid" || status=$?
cat "$miniature_log"
stage_done
exit $status
