#!/usr/bin/env bash
# Smoke run of the asv suite (benchmarks/, asv.conf.json) in the existing environment: every
# benchmark of the quick profile runs once in .venv's Python, nothing is saved, and the exit
# status is non-zero when a benchmark fails. About 35 s on two shared cores.
#
# Extra arguments go to `asv run`, e.g. `bash scripts/asv_quick.sh --bench EncoderForward`.
# UDLBENCH_ASV_PROFILE=full adds the paper's size (m = 1000, p = 1500): minutes, not for CI.
# Timings worth keeping come from a dedicated machine (README, "Performance tracking").
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"

[[ -x .venv/bin/asv ]] || bash scripts/setup.sh

export OMP_NUM_THREADS=1 MKL_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1
export UDLBENCH_ASV_PROFILE="${UDLBENCH_ASV_PROFILE:-quick}"

# asv asks for a machine description on first use; --yes stores the defaults non-interactively.
.venv/bin/asv machine --yes >/dev/null
# forkserver: torch is imported once and every benchmark runs in a fork (a fresh Python per
# benchmark would cost about 3 s each).
exec .venv/bin/asv run --python=same --quick --show-stderr --launch-method forkserver "$@"
