#!/bin/sh
# Heatmap against vector trajectory encoding (path_encoding.md): each arm's path following (16 held-out digits
# per path shape) and kinema eval on 100 held-out clips with and without the path, dpmpp_2m 15 steps, guidance 3,
# seed 0; two jobs at a time on one thread each. Run from the repo root after both trainings.
set -u
OUT=benchmarks/results/path_encoding
p() { OMP_NUM_THREADS=1 .venv/bin/python benchmarks/path_following.py --model "runs/path-$1/model" --num 16 \
      --out "$OUT/$1-paths" > "$OUT/$1-paths.log" 2>&1; }
e() { arm=$1 name=$2; shift 2; OMP_NUM_THREADS=1 .venv/bin/kinema eval --model "runs/path-$arm/model" --num 100 \
      --seed 0 --sampler dpmpp_2m --steps 15 --guidance 3 "$@" --out "$OUT/$arm-$name" > "$OUT/$arm-$name.log" 2>&1; }
p heatmap & p vector & wait
e heatmap path --cond text trajectory & e vector path --cond text trajectory & wait
e heatmap nopath --cond text & e vector nopath --cond text & wait
echo "done $(date -u)"
