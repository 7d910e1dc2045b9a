#!/bin/sh
# Every acceptance eval of one model ($1, named $2): 100 held-out clips each, dpmpp_2m 15 steps, seed 0, two at a time
# with one thread each.
set -u
cd /work/main
K=.venv/bin/kinema
M=$1 N=$2 OUT=runs/coh2
C="--sampler dpmpp_2m --steps 15 --num 100"
e() { name=$1; shift; OMP_NUM_THREADS=1 $K eval --model $M $C "$@" --out $OUT/final-$N-$name > $OUT/final-$N-$name.log 2>&1; }
e text --cond text --guidance 3 & e predict --task predict --context 4 & wait
e interpolate --task interpolate & e uncond & wait
e animate --task animate & wait
echo "$N final evals done $(date)" >> $OUT/summary.txt
