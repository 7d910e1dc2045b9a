#!/bin/sh
# kinema eval of each model given: text -> video (guidance 3) and prediction (4 given -> 12), 128 clips each,
# dpmpp_2m 15 steps; the two evals of a model run side by side with one thread each.
set -u
cd /work/main
K=.venv/bin/kinema
OUT=runs/coh2
for model in "$@"; do
  name=$(basename $model)
  OMP_NUM_THREADS=1 $K eval --model $model --cond text --guidance 3 --sampler dpmpp_2m --steps 15 --num 128 \
      --out $OUT/eval-$name-text > $OUT/eval-$name-text.log 2>&1 &
  OMP_NUM_THREADS=1 $K eval --model $model --task predict --context 4 --sampler dpmpp_2m --steps 15 --num 128 \
      --out $OUT/eval-$name-predict > $OUT/eval-$name-predict.log 2>&1 &
  wait
  echo "$name evaluated $(date)" >> $OUT/summary.txt
done
