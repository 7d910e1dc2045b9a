#!/bin/sh
# coherence_retrain4/evals.sh on one model ($1) into directory $2 (100 held-out clips, dpmpp_2m_sde 50 steps,
# seed 0), then the frame tasks guided towards their given frames (--frame-guidance 3) and prediction without
# the reference image (--no-frame-reference), two at a time on one thread each. Run from the repo root.
set -u
M=$1 OUT=$2
benchmarks/results/coherence_retrain4/evals.sh "$M" "$OUT"
e() { name=$1; shift; OMP_NUM_THREADS=1 .venv/bin/kinema eval --model "$M" --sampler dpmpp_2m_sde --steps 50 \
      --num 100 --seed 0 "$@" --out "$OUT/$name" > "$OUT/$name.log" 2>&1; }
e predict-fg3 --task predict --context 4 --frame-guidance 3 & e interpolate-fg3 --task interpolate --frame-guidance 3 & wait
e animate-fg3 --task animate --frame-guidance 3 & e predict-noref --task predict --context 4 --no-frame-reference & wait
