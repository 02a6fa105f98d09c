#!/usr/bin/env bash
# Wall-clock seconds of `metaadd demo` and of an implicit-mode `check-grad` with 1 and 2 threads
# and with the default (no --threads), on an idle machine and with one core kept busy by another
# process; the median of 3 runs each.
# Writes benches/threads/RESULTS.md. Run from the repository root on an otherwise idle machine,
# after `cargo build --release`:
#   bash benches/threads/run.sh
set -euo pipefail
bin="$(pwd)/target/release/metaadd"
dir=$(mktemp -d)
trap 'rm -rf "$dir"; kill $busy 2>/dev/null || true' EXIT
busy=""
head -n 201 examples/data/diabetes.csv > "$dir/train.csv"
{ head -n 1 examples/data/diabetes.csv; tail -n 100 examples/data/diabetes.csv; } > "$dir/meta.csv"

seconds() { # median wall-clock seconds of 3 runs of the command
    local t=()
    for _ in 1 2 3; do
        local start end
        start=$(date +%s.%N)
        "$@" > /dev/null 2>&1
        end=$(date +%s.%N)
        t+=("$(awk -v a="$start" -v b="$end" 'BEGIN { print b - a }')")
    done
    printf '%s\n' "${t[@]}" | sort -g | sed -n 2p
}
threads() { [ "$1" = default ] || echo "--threads $1"; }
# shellcheck disable=SC2046 # the flag and its value are two words, or none
demo() { "$bin" demo $(threads "$1") --out "$dir/demo.safetensors"; }
grad() {
    # shellcheck disable=SC2046
    "$bin" check-grad $(threads "$1") --train "$dir/train.csv" --meta "$dir/meta.csv" --target target \
        --hypergradient implicit --ridge 0.1 --hidden 20
}

rows=()
for load in idle "one core busy"; do
    if [ "$load" != idle ]; then
        ( while :; do :; done ) &
        busy=$!
    fi
    for cmd in demo grad; do
        one=$(seconds "$cmd" 1)
        two=$(seconds "$cmd" 2)
        auto=$(seconds "$cmd" default)
        ratio() { awk -v a="$one" -v b="$1" 'BEGIN { printf "%.2f", b / a }'; }
        name=$([ "$cmd" = demo ] && echo "demo" || echo "check-grad, implicit")
        rows+=("| $name | $load | $(printf %.2f "$one") | $(printf %.2f "$two") | $(ratio "$two") | $(printf %.2f "$auto") | $(ratio "$auto") |")
    done
    if [ -n "$busy" ]; then kill "$busy"; wait "$busy" 2>/dev/null || true; busy=""; fi
done

{
    echo "# Threads: 1 against 2"
    echo
    echo "\`bash benches/threads/run.sh\` on $(nproc) cores ($(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs)),"
    echo "build $(git rev-parse --short HEAD); median wall-clock seconds of 3 runs."
    echo
    echo "| command | machine | 1 thread (s) | 2 threads (s) | 2 / 1 | default (s) | default / 1 |"
    echo "|---|---|---|---|---|---|---|"
    printf '%s\n' "${rows[@]}"
} > benches/threads/RESULTS.md
cat benches/threads/RESULTS.md
