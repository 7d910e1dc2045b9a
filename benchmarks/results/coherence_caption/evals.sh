#!/bin/sh
# coherence_identity/evals.sh on one model ($1) into directory $2, then prediction and interpolation with the
# reference image (the given first frame) guided at 3 (--cond image --guidance 3), two at a time on one thread
# each. Run from the repo root.
set -u
M=$1 OUT=$2
benchmarks/results/coherence_identity/evals.sh "$M" "$OUT"
e() { name=$1; shift; OMP_NUM_THREADS=1 .venv/bin/kinema eval --model "$M" --sampler dpmpp_2m_sde --steps 50 \
      --num 100 --seed 0 "$@" --out "$OUT/$name" > "$OUT/$name.log" 2>&1; }
e predict-img3 --task predict --context 4 --cond image --guidance 3 &
e interpolate-img3 --task interpolate --cond image --guidance 3 & wait
echo "evals of $M done $(date -u)"
