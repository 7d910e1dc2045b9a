#!/bin/sh
# Coherence ablation 4: how long the caption's direction holds in the training clips. The text-only recipe at the
# bundled model's 16 frames (configs/moving-digits-text.yaml with 2x2 patches and diffusion.shift 2), with the
# digit placed so that its first step (arm L1, as before) or its first four steps (arm L4, data.lead_frames 4) go
# the caption's way before any bounce. Same seeds, trained side by side with one thread each; $1 = steps.
set -u
cd /work/main
steps=${1:-1800}
arm() {
  name=$1; shift
  resume=""; [ -d runs/c4/$name/checkpoints ] && resume=--resume
  OMP_NUM_THREADS=1 /usr/bin/time -v .venv/bin/kinema train --config configs/moving-digits-text.yaml \
      --out runs/c4/$name $resume --steps $steps --set data.num_frames=16 --set model.patch_size=2 \
      --set diffusion.shift=2 --set train.checkpoint_every=300 --set train.sample_every=0 "$@" \
      >> runs/c4/$name.log 2>&1
}
arm L1 &
arm L4 --set data.lead_frames=4 &
wait
