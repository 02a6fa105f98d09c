#!/usr/bin/env bash
# Builds the Python package (python/, PyO3 + maturin) into a virtual environment and runs its
# tests. Run from anywhere after `cargo build --release` (one test compares with the CLI):
#   bash scripts/python-tests.sh
# Environment: METAADD_PY_VENV (default: $HOME/.cache/metaadd-py-venv), METAADD_PYTHON
# (default: python3).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
venv="${METAADD_PY_VENV:-$HOME/.cache/metaadd-py-venv}"
python="${METAADD_PYTHON:-python3}"
[[ -x "$venv/bin/python" ]] || "$python" -m venv "$venv"
"$venv/bin/python" -m pip install -q --upgrade pip
"$venv/bin/python" -m pip install -q "maturin>=1.5,<2" "numpy>=1.21" "scikit-learn>=1.6" pandas pytest matplotlib
(cd python && VIRTUAL_ENV="$venv" PATH="$venv/bin:$PATH" maturin develop --release --quiet)
"$venv/bin/python" -m pytest -q python/tests
