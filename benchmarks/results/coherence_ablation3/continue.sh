#!/bin/sh
# The shipped recipe's retrain: arm $1 resumed exactly from its last checkpoint to $2 steps with 2 threads
# (the machine to itself). Further args: the arm's --set overrides, which resuming needs again.
set -u
cd /work/main
arm=$1 steps=$2
shift 2
OMP_NUM_THREADS=2 /usr/bin/time -v .venv/bin/kinema train --config configs/moving-digits-all.yaml \
    --out runs/c3/$arm --resume --steps $steps --set diffusion.shift=2 --set train.checkpoint_every=250 "$@" \
    >> runs/c3/$arm-continue.log 2>&1
