#!/usr/bin/env bash
# The real-data experiment spread over a Slurm job array: each array task runs one shard of
# the fits (metaadd reads SLURM_ARRAY_TASK_ID and SLURM_ARRAY_TASK_COUNT) into its own
# results file, runs/real.shard-I-of-N.csv; a shard that is stopped resumes when rerun.
#
#   sbatch docs/cluster/slurm-experiment.sh                  # 8 shards, 2 cores each
#   # when all have finished, the table (the same flags, --merge instead of running):
#   metaadd experiment real --data-dir examples/data --results runs/real.csv \
#       --merge runs/real.shard-*-of-8.csv
#
# Submit from the repository root after `cargo build --release`; every task must see the
# same binary, data and runs/ folder (a shared file system).
#SBATCH --job-name=metaadd-real
#SBATCH --array=0-7
#SBATCH --cpus-per-task=2
#SBATCH --mem=8G
#SBATCH --time=04:00:00
#SBATCH --output=runs/slurm-%A_%a.log
set -euo pipefail
mkdir -p runs
exec target/release/metaadd experiment real --data-dir examples/data \
    --results runs/real.csv --threads "${SLURM_CPUS_PER_TASK:-2}" --quiet
