#!/usr/bin/env bash
# Create .venv in the repository root and install udlbench into it (editable, with the dev extra).
#
# Idempotent: the install runs only when .venv is missing or broken, or when pyproject.toml (or this
# script) changed since the last successful install; a stamp file records what was installed.
# torch==2.13.0 is installed first and on its own: that pin takes the CPU wheel that lies on this
# machine's disk, whereas a looser requirement would pull the newest build with GBs of CUDA wheels.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"

PYTHON="${PYTHON:-python3}"
TORCH_PIN="torch==2.13.0"
VENV="$ROOT/.venv"
STAMP="$VENV/.udlbench-installed"

want="$(cat pyproject.toml scripts/setup.sh | sha256sum | cut -d' ' -f1) $TORCH_PIN"

venv_ok() {
    [[ -x "$VENV/bin/python" ]] && "$VENV/bin/python" -c "import sys" >/dev/null 2>&1
}

if venv_ok && [[ -f "$STAMP" ]] && [[ "$(cat "$STAMP")" == "$want" ]]; then
    exit 0
fi

mkdir -p "$VENV"
exec 9>"$VENV/.udlbench-setup.lock"
if command -v flock >/dev/null 2>&1; then
    flock 9
fi
# Another process may have finished the install while this one waited for the lock.
if venv_ok && [[ -f "$STAMP" ]] && [[ "$(cat "$STAMP")" == "$want" ]]; then
    exit 0
fi

if ! venv_ok; then
    echo "setup: creating $VENV with $("$PYTHON" --version 2>&1)" >&2
    "$PYTHON" -m venv --clear "$VENV"
    exec 9>"$VENV/.udlbench-setup.lock"
fi
rm -f "$STAMP"

# pip's and setuptools' chatter goes to a log that is shown only when a step fails.
LOG="$VENV/.udlbench-setup.log"
: >"$LOG"
pip_install() {
    if ! "$VENV/bin/python" -m pip --disable-pip-version-check --no-input install "$@" >>"$LOG" 2>&1
    then
        cat "$LOG" >&2
        echo "setup: 'pip install $*' failed (log above, also in $LOG)" >&2
        exit 1
    fi
}
echo "setup: installing $TORCH_PIN and udlbench[dev] into .venv" >&2
pip_install "$TORCH_PIN"
pip_install -e ".[dev]"

installed="$("$VENV/bin/python" -c "import torch; print(torch.__version__)")"
if [[ "$installed" != 2.13.0* ]]; then
    echo "setup: expected torch 2.13.0, found $installed" >&2
    exit 1
fi

printf '%s\n' "$want" >"$STAMP"
echo "setup: done (torch $installed)" >&2
