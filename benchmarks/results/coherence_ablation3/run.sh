#!/bin/sh
# Coherence ablation 3: the bundled recipe with its schedule shifted towards high noise (diffusion.shift 2, as the
# text model), with the known-frames channels of unknown frames left at zero (arm S) or holding the nearest given
# frame (arm SF, model.frame_fill nearest). Same seeds and data, trained side by side with one thread each so both
# see the same machine; $1 = steps (resumes when the run exists).
set -u
cd /work/main
steps=${1:-1500}
arm() {
  name=$1; shift
  resume=""; [ -f runs/c3/$name/checkpoint/state.pt ] || [ -d runs/c3/$name/checkpoint ] && resume=--resume
  OMP_NUM_THREADS=1 /usr/bin/time -v .venv/bin/kinema train --config configs/moving-digits-all.yaml \
      --out runs/c3/$name $resume --steps $steps --set diffusion.shift=2 --set train.checkpoint_every=250 "$@" \
      >> runs/c3/$name.log 2>&1
}
arm S &
arm SF --set model.frame_fill=nearest &
wait
