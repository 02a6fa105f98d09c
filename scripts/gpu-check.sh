#!/usr/bin/env bash
# The GPU path in one call, on a machine with an NVIDIA GPU and its driver:
#   1. builds with --features cuda (the system's CUDA toolkit: nvcc on the PATH, and the
#      cuBLAS, cuRAND and NVRTC libraries candle loads at run time; CUDA_COMPUTE_CAP from
#      nvidia-smi),
#   2. runs the CUDA tests (tests/cuda.rs: hypergradient on GPU vs CPU within 1e-5 relative in
#      f32 and 1e-10 in f64 for K = 1, 5, 20 and every mode; one model file's predictions on
#      both within 1e-6; a GPU fit selecting the CPU fit's features),
#   3. times one outer iteration on the GPU and on the CPU at n = 2000 … 10⁶ training rows
#      (examples/bench_scale.rs: p = 100, m = 6, K = 5 exact, f32) and prints one table.
#
#   bash scripts/gpu-check.sh [--n 2000,10000,100000,1000000] [--reps 5]
#
# A plain `cargo test` lists the CUDA tests as ignored ("needs a CUDA GPU").
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
ns="2000,10000,100000,1000000"
reps=5
while [[ $# -gt 0 ]]; do
    case "$1" in
        --n) ns="$2"; shift 2 ;;
        --reps) reps="$2"; shift 2 ;;
        *) echo "unknown argument $1: --n LIST, --reps R" >&2; exit 2 ;;
    esac
done
if ! command -v nvidia-smi >/dev/null || ! nvidia-smi -L >/dev/null 2>&1; then
    echo "gpu-check: no NVIDIA GPU here (nvidia-smi finds none); nothing was run" >&2
    exit 1
fi
nvidia-smi -L
if [[ -z "${CUDA_COMPUTE_CAP:-}" ]]; then
    cap=$(nvidia-smi --query-gpu=compute_cap --format=csv,noheader | head -n1 | tr -d ' .')
    export CUDA_COMPUTE_CAP="$cap"
fi
if ! command -v nvcc >/dev/null; then
    # scripts/install-cuda-toolchain.sh's wheels build the code but lack the run-time
    # libraries (cuBLAS, cuRAND, NVRTC) a GPU run loads.
    echo "gpu-check: nvcc is not on the PATH: install the CUDA toolkit (with cuBLAS, cuRAND" \
        "and NVRTC) matching the driver, e.g. export PATH=/usr/local/cuda/bin:\$PATH" >&2
    exit 1
fi
nvidia-smi --query-gpu=name,driver_version,compute_cap --format=csv,noheader
nvcc --version | tail -n1
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-target/cuda}"
export CUDAFORGE_THREADS="${CUDAFORGE_THREADS:-$(nproc)}"

echo "== build (--features cuda, compute capability $CUDA_COMPUTE_CAP)"
cargo build --release --features cuda --example bench_scale
echo "== CUDA tests"
cargo test --release --features cuda --test cuda -- --ignored --nocapture
echo "== one outer iteration, GPU against CPU"
cpu=$(mktemp) gpu=$(mktemp)
trap 'rm -f "$cpu" "$gpu"' EXIT
"$CARGO_TARGET_DIR/release/examples/bench_scale" --device cpu --n "$ns" --reps "$reps" | tee "$cpu"
"$CARGO_TARGET_DIR/release/examples/bench_scale" --device cuda --n "$ns" --reps "$reps" | tee "$gpu"
echo
echo "(the CPU reads the sparse design where auto takes it, n ≥ 2·10⁴ here; the GPU the dense one)"
echo "| n | CPU s/iteration | GPU s/iteration | CPU/GPU |"
echo "|---|---|---|---|"
join -t, <(grep '^cpu,' "$cpu" | cut -d, -f3,6 | sort -t, -k1,1) \
         <(grep '^cuda,' "$gpu" | cut -d, -f3,6 | sort -t, -k1,1) |
    sort -t, -k1,1n |
    awk -F, '{ printf "| %d | %.4f | %.4f | %.1f |\n", $1, $2, $3, $2 / $3 }'
