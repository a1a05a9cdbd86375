#!/usr/bin/env bash
# The main job: regenerate every table and figure of the paper.
#   ./run_all.sh [--profile smoke|cpu|paper] [--data-dir DIR] [--external-grading-dir DIR]
#                [--from NN] [--only NN] [--force] [--dry-run]
# Creates/reuses .venv, installs, then runs notebooks/NN_*.ipynb in order with papermill into
# results/<profile>/executed/. Default: the smoke profile on the built-in synthetic fundus set
# (generated on first use). Resumes: finished, unchanged notebooks and training runs are skipped.
set -euo pipefail
cd "$(dirname "$0")"
source scripts/setup_env.sh
exec python -m mtunet.commands.run_notebooks "$@"
