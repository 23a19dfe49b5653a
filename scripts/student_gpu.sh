#!/usr/bin/env bash
# Pixel student on all 10 LIBERO-Goal tasks at 128 px (agentview + wrist cameras, FiLM-ResNet encoder), for a
# machine with a CUDA GPU; then its evaluation over the 50 init states of every task (chart and JSON in
# RUN_DIR/eval/).
#
# Usage: scripts/student_gpu.sh DATASET [DATASET ...]
#   DATASET: what `cli.py student --dataset` takes (generate folders, LIBERO-layout HDF5 files or folders,
#   LeRobot v3 exports). State-only datasets work: the images are rendered by replaying the stored states.
# Environment (defaults in brackets): RUN_DIR [runs/student-goal-pixels], EPISODES_PER_TASK [50], EPOCHS [300],
#   BATCH_SIZE [256], SEED [0], EVAL_ENVS [8] (parallel eval workers; rendering runs on the CPU cores).
set -euo pipefail
if [ $# -lt 1 ]; then
  echo "usage: $0 DATASET [DATASET ...]" >&2
  exit 2
fi
cd "$(dirname "$0")/.."
export MUJOCO_GL=${MUJOCO_GL:-egl} PYOPENGL_PLATFORM=${PYOPENGL_PLATFORM:-egl}
RUN_DIR=${RUN_DIR:-runs/student-goal-pixels}
PYTHON=${PYTHON:-python}
"$PYTHON" cli.py student --dataset "$@" --env LIBERO-Goal-v0 --obs-mode pixels --image-size 128 \
  --episodes-per-task "${EPISODES_PER_TASK:-50}" --epochs "${EPOCHS:-300}" --batch-size "${BATCH_SIZE:-256}" \
  --seed "${SEED:-0}" --device cuda --torch-threads 4 --no-progress --run-dir "$RUN_DIR"
"$PYTHON" cli.py eval --checkpoint "$RUN_DIR/checkpoint" --task-id all --episodes 50 --sampling deterministic \
  --num-envs "${EVAL_ENVS:-8}" --seed "${SEED:-0}" --device cuda
