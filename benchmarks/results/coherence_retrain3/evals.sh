#!/bin/sh
# Every acceptance eval of one model ($1, named $2): 100 held-out clips each, dpmpp_2m 15 steps, seed 0, two at a time
set -u
cd /work/main
K=.venv/bin/kinema
M=$1 N=$2 OUT=runs/ref
C="--sampler dpmpp_2m --steps 15 --num 100"
e() { name=$1; shift; OMP_NUM_THREADS=1 $K eval --model $M $C "$@" --out $OUT/ev-$N-$name > $OUT/ev-$N-$name.log 2>&1; }
e predict --task predict --context 4 & e interpolate --task interpolate & wait
e text --cond text --guidance 3 & e animate --task animate & wait
e uncond & wait
echo "$N evals done $(date)" >> $OUT/summary.txt
