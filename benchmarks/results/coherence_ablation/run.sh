#!/bin/sh
# Coherence ablation: two arms at equal compute (800 steps each of the shipped recipe's batch), trained side by
# side with one thread each so both see the same machine: the shipped recipe (A) and the same with half of the
# noise variance shared by a clip's frames (B). Then kinema eval of both and of the shipped model.
set -u
cd /work/main
K=.venv/bin/kinema
OUT=runs/ablation
start=$(date +%s)
for arm in A B; do
  extra=""
  [ "$arm" = B ] && extra="--set diffusion.frame_noise=0.5"
  OMP_NUM_THREADS=1 /usr/bin/time -v $K train --config configs/moving-digits-all.yaml --out $OUT/$arm --steps 800 \
      --set train.sample_every=0 --set train.checkpoint_every=200 $extra > $OUT/$arm.log 2>&1 &
done
wait
echo "A and B trained side by side in $(( $(date +%s) - start )) s" >> $OUT/summary.txt
for model in $OUT/A $OUT/B moving-digits; do
  name=$(basename $model)
  $K eval --model $model --cond text --guidance 3 --sampler dpmpp_2m --steps 15 --num 128 \
      --out $OUT/eval-$name-text > $OUT/eval-$name-text.log 2>&1
  $K eval --model $model --task predict --context 4 --sampler dpmpp_2m --steps 15 --num 128 \
      --out $OUT/eval-$name-predict > $OUT/eval-$name-predict.log 2>&1
  echo "$name evaluated $(date)" >> $OUT/summary.txt
done
echo done >> $OUT/summary.txt
