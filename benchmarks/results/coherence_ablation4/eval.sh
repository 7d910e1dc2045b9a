#!/bin/sh
# Text -> video (guidance 3, dpmpp_2m 15 steps, 100 held-out prompts, seed 0) of the arms' model directories named
# ($@, e.g. L1@1800 L4@1800 under runs/c4), side by side with one thread each. The prompts are the same for both
# arms (an item's digit and direction are drawn before its start position).
set -u
cd /work/main
for arm in "$@"; do
  OMP_NUM_THREADS=1 .venv/bin/kinema eval --model runs/c4/$arm --cond text --guidance 3 --sampler dpmpp_2m \
      --steps 15 --num 100 --out runs/c4/ev-$arm > runs/c4/ev-$arm.log 2>&1 &
done
wait
