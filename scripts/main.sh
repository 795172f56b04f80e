#!/usr/bin/env bash
# Main job: run the default experiment selection on the quick profile into results/ and write the
# comparison report to reports/latest/. Arguments go to `udlbench run` (see `bash scripts/main.sh --help`).
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"

bash scripts/setup.sh

export OMP_NUM_THREADS="${OMP_NUM_THREADS:-1}" MKL_NUM_THREADS="${MKL_NUM_THREADS:-1}"
export OPENBLAS_NUM_THREADS="${OPENBLAS_NUM_THREADS:-1}"

exec .venv/bin/udlbench run "$@"
