#!/bin/sh
# Continue arm $1 (resumed exactly from its last checkpoint) to $2 steps with $3 threads; further args: its --set
# overrides, which resuming needs again.
set -u
cd /work/main
arm=$1 steps=$2 threads=$3
shift 3
OMP_NUM_THREADS=$threads /usr/bin/time -v .venv/bin/kinema train --config configs/moving-digits-all.yaml \
    --out runs/coh2/$arm --resume --steps $steps --set model.patch_size=2 --set train.sample_every=0 \
    --set train.checkpoint_every=500 "$@" >> runs/coh2/$arm.log 2>&1
