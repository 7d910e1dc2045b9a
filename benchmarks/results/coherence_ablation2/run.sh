#!/bin/sh
# Coherence ablation 2: the shipped recipe with 2x2 patches (3.0x the clips/s), with and without half of the
# noise variance shared by a clip's frames. Same seeds and data, 3,000 steps each, trained side by side with one
# thread each so both see the same machine.
set -u
cd /work/main
K=.venv/bin/kinema
OUT=runs/coh2
start=$(date +%s)
for arm in P P-fn; do
  extra=""
  [ "$arm" = P-fn ] && extra="--set diffusion.frame_noise=0.5"
  OMP_NUM_THREADS=1 /usr/bin/time -v $K train --config configs/moving-digits-all.yaml --out $OUT/$arm --steps 3000 \
      --set model.patch_size=2 --set train.sample_every=0 --set train.checkpoint_every=500 $extra > $OUT/$arm.log 2>&1 &
done
wait
echo "trained side by side in $(( $(date +%s) - start )) s" >> $OUT/summary.txt
