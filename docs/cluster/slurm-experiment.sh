#!/usr/bin/env bash
# The real-data experiment spread over a Slurm job array: each array task runs one shard of
# the fits (shard SLURM_ARRAY_TASK_ID of 8, given as --shard) into its own results file,
# runs/real.shard-I-of-8.csv; a shard that is stopped resumes when rerun, also alone
# (`sbatch --array=3 docs/cluster/slurm-experiment.sh`).
#
#   mkdir -p runs && sbatch docs/cluster/slurm-experiment.sh   # 8 shards, 2 cores each
#   # when all have finished, the table (the same flags, --merge instead of running):
#   metaadd experiment real --data-dir examples/data --results runs/real.csv \
#       --merge runs/real.shard-*-of-8.csv
#
# Submit from the repository root after `cargo build --release`; every task must see the
# same binary, data and runs/ folder (a shared file system). runs/ must exist before sbatch:
# Slurm opens the log files below before the script starts.
#SBATCH --job-name=metaadd-real
#SBATCH --array=0-7
#SBATCH --cpus-per-task=2
#SBATCH --mem=8G
#SBATCH --time=04:00:00
#SBATCH --output=runs/slurm-%A_%a.log
set -euo pipefail
exec target/release/metaadd experiment real --data-dir examples/data \
    --results runs/real.csv --shard "${SLURM_ARRAY_TASK_ID}/8" \
    --threads "${SLURM_CPUS_PER_TASK:-2}" --quiet
