#!/bin/sh
# Every acceptance eval of one model ($1) into directory $2: 100 held-out clips each, dpmpp_2m_sde 50 steps,
# seed 0, two evals at a time on one thread each; the frame tasks with and without frame guidance 3.
# Run from the repo root.
set -u
K=.venv/bin/kinema
M=$1 OUT=$2
mkdir -p "$OUT"
C="--sampler dpmpp_2m_sde --steps 50 --num 100 --seed 0"
e() { name=$1; shift; OMP_NUM_THREADS=1 $K eval --model "$M" $C "$@" --out "$OUT/$name" > "$OUT/$name.log" 2>&1; }
e text --cond text --guidance 3 & e predict-fg3 --task predict --context 4 --frame-guidance 3 & wait
e interpolate-fg3 --task interpolate --frame-guidance 3 & e animate-fg3 --task animate --frame-guidance 3 & wait
e predict --task predict --context 4 & e interpolate --task interpolate & wait
e uncond & e image --cond image --guidance 3 & wait
echo "evals of $M done $(date -u)"
