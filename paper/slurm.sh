#!/bin/bash
# The paper grid as a SLURM array job: one shard of the (row, seed) runs per task, one GPU each.
#
#   sbatch --array=1-8 paper/slurm.sh      # 8 shards: task k runs `make paper SHARD=k/8`
#
# Before submitting, in the clone the tasks run from (committed, so that every task sees the same commit):
#   dvc remote add -d storage /shared/dvc-remote    # or s3://bucket/path, ssh://host/path, ...: what every node
#   git add .dvc/config && git commit -m "paper grid remote"        # and the collecting machine can reach
#   make repro && dvc push --run-cache               # optional, recommended: the main pipeline once, so that the
#                                                    # tasks restore it from the remote instead of each computing it
# Each task pushes its runs (DVC's run-cache with their outputs) to that remote. Afterwards, on any machine:
#   make paper-collect SHARDS=8      # pulls every part, writes metrics/paper.json, reports/paper.md,
#                                    # plots/paper.png; trains nothing, and names any run still missing
#
# Shared-cache caveat: DVC locks a workspace, so tasks must not share one working tree. Each task below works in
# its own clone (PAPER_WORKDIR, default the job's node-local scratch). Pointing the clones at one shared cache
# (`dvc cache dir /shared/cache`, with `dvc config cache.shared group`) saves copies, but its run-cache is then
# written by many tasks at once, and on network filesystems without reliable locking that can corrupt entries:
# prefer a per-task cache and the remote, which every task only adds files to.
#SBATCH --job-name=paper-grid
#SBATCH --gres=gpu:1
#SBATCH --cpus-per-task=8
#SBATCH --time=48:00:00
#SBATCH --output=paper-grid-%A_%a.out
set -euo pipefail

: "${SLURM_ARRAY_TASK_ID:?submit as an array job: sbatch --array=1-N paper/slurm.sh}"
: "${SLURM_ARRAY_TASK_COUNT:?submit as an array job: sbatch --array=1-N paper/slurm.sh}"
SOURCE="${SLURM_SUBMIT_DIR:-$PWD}"
WORK="${PAPER_WORKDIR:-${TMPDIR:-/tmp}/paper-grid-${SLURM_ARRAY_JOB_ID:-$$}-${SLURM_ARRAY_TASK_ID}}"

git clone --quiet "$SOURCE" "$WORK"
cd "$WORK"
make paper SHARD="${SLURM_ARRAY_TASK_ID}/${SLURM_ARRAY_TASK_COUNT}"
