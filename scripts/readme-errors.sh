#!/usr/bin/env bash
# Prints the README's examples of bad input: each command on a small file in a scratch folder,
# and the one line it stops with. Run from the repository root after `cargo build --release`:
#   bash scripts/readme-errors.sh
set -uo pipefail
bin="$(pwd)/target/release/metaadd"
dir=$(mktemp -d)
trap 'rm -rf "$dir"' EXIT
cd "$dir" || exit 1

rows() { # n rows of a,b,c,y
    echo "a,b,c,y"
    for i in $(seq 1 "$1"); do echo "$i,$((i % 7)),$((i * 3 % 11)),$((i * i % 13))"; done
}
rows 40 > good.csv
with_b() { rows 40 | awk -F, -v OFS=, -v v="$1" 'NR == 6 { $2 = v } { print }' > train.csv; }
show() { "$bin" "$@" 2>&1 >/dev/null | grep '^error:'; }

with_b abc && show fit --train train.csv --target y --meta-frac 0.25 --quiet
with_b "" && show fit --train train.csv --target y --meta-frac 0.25 --quiet
with_b inf && show fit --train train.csv --target y --meta-frac 0.25 --quiet
show fit --train good.csv --target label --meta-frac 0.25 --quiet
printf 'k,y\n2,1\n2,3\n2,5\n2,4\n2,0\n2,9\n2,1\n2,2\n2,3\n2,7\n' > only.csv
show fit --train only.csv --target y --meta-frac 0.25 --quiet
rows 8 > t.csv
show fit --train t.csv --target y --meta-frac 0.25 --quiet
rows 40 | awk -F, -v OFS=, 'NR > 1 { $4 = NR % 3 } { print }' > three.csv
show fit --train three.csv --target y --task binary --meta-frac 0.25 --quiet
rows 20 | sed '1s/a,b,c,y/a,bb,c,y/' > meta.csv
show fit --train good.csv --target y --meta meta.csv --quiet
"$bin" fit --train good.csv --target y --meta-frac 0.25 --iterations 5 --quiet --out m.safetensors >/dev/null
printf 'a,c\n1,2\n' > new.csv
show predict --model m.safetensors --data new.csv
printf 'a,city,y\n1,Oslo,2\n2,Rome,3\n3,Oslo,4\n4,Rome,5\n5,Oslo,1\n6,Rome,2\n7,Oslo,3\n8,Rome,4\n9,Oslo,5\n10,Rome,1\n' > cities.csv
"$bin" fit --train cities.csv --target y --meta-frac 0.2 --iterations 5 --quiet --out c.safetensors >/dev/null
printf 'a,city\n1,Oslo\n2,Paris\n' > paris.csv
show predict --model c.safetensors --data paris.csv
echo "not a model" > other.safetensors
show predict --model other.safetensors --data new.csv
