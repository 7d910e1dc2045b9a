#!/bin/sh
# Score both arms of the latent-against-pixel comparison (latent_vs_pixel.md): text -> video on 100 held-out
# captions at guidance 3, dpmpp_2m_sde 50 steps, seed 0, the two evals at once on one thread each; then the
# seconds per clip of each, alone on both threads. Run from the repo root after both trainings.
set -u
OUT=benchmarks/results/latent_vs_pixel
e() { OMP_NUM_THREADS=1 .venv/bin/kinema eval --model "runs/d64-$1" --cond text --guidance 3 --num 100 --seed 0 \
      --sampler dpmpp_2m_sde --steps 50 --out "$OUT/$1" > "$OUT/$1.log" 2>&1; }
e pixel & e latent & wait
for arm in pixel latent; do
  .venv/bin/python benchmarks/latent_speed.py --model "runs/d64-$arm" --steps 25 --name "latent_vs_pixel/speed-$arm"
done
echo "done $(date -u)"
