#!/usr/bin/env bash
# Compare metaadd's group-lasso solver with skglm; writes benches/solver/RESULTS.md.
# Creates a throwaway venv under target/solver-bench-venv (reused when present).
set -euo pipefail
cd "$(dirname "$0")/../.."
VENV=target/solver-bench-venv
if [ ! -x "$VENV/bin/python" ]; then
    python3 -m venv "$VENV"
    "$VENV/bin/pip" install --quiet numpy safetensors skglm scikit-learn
fi
if [ ! -x target/release/metaadd ]; then
    cargo build --release --bin metaadd
fi
# No timing while cargo/rustc compete for the cores.
while pgrep -x cargo >/dev/null || pgrep rustc >/dev/null; do sleep 10; done
# metaadd's solver is single-threaded; so is skglm's BCD once BLAS is: with 2 BLAS threads and
# another process on one of the 2 cores, skglm's fit was seen to take 10-100x longer.
export OPENBLAS_NUM_THREADS=1 OMP_NUM_THREADS=1 MKL_NUM_THREADS=1 NUMBA_NUM_THREADS=1
exec "$VENV/bin/python" benches/solver/compare.py "$@"
