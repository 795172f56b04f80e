#!/usr/bin/env bash
# Run the test suite: tests/ and theorems/ on two xdist workers, one BLAS/OpenMP thread each,
# after a smoke run of the asv suite (scripts/asv_quick.sh) when no paths are given.
# By default the `slow` (training-based) and `full` (paper-scale) tiers are deselected; a `-m`
# given here replaces that selection, e.g. `bash scripts/test.sh -m slow`.
#
# Extra arguments go to pytest. Arguments that name existing paths (optionally with ::node ids)
# replace the default paths, e.g. `bash scripts/test.sh tests/test_cli.py -x`; other arguments
# are added to the defaults, e.g. `bash scripts/test.sh -m fast`.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"

bash scripts/setup.sh

export OMP_NUM_THREADS=1 MKL_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1
export HYPOTHESIS_PROFILE="${HYPOTHESIS_PROFILE:-ci}"

has_tests() {
    [[ -d "$1" ]] && [[ -n "$(find "$1" \( -name 'test_*.py' -o -name '*_test.py' \) -print -quit)" ]]
}

explicit_paths=0
for arg in "$@"; do
    if [[ "$arg" != -* ]] && [[ -e "${arg%%::*}" ]]; then
        explicit_paths=1
        break
    fi
done

paths=()
if [[ "$explicit_paths" == 0 ]]; then
    for dir in tests theorems; do
        if has_tests "$dir"; then
            paths+=("$dir")
        fi
    done
fi

if [[ "$explicit_paths" == 0 ]]; then
    bash scripts/asv_quick.sh   # every asv benchmark once (about 25 s); fails on a broken one
fi
exec .venv/bin/python -m pytest -n 2 -q -m "not slow and not full" "${paths[@]}" "$@"
