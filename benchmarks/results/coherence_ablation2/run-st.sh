#!/bin/sh
# Arm P-st: arm P (2x2 patches) with full space-time attention at the deepest level (and the middle), 1,500 steps,
# one thread, beside arm P's second half.
set -u
cd /work/main
OMP_NUM_THREADS=1 /usr/bin/time -v .venv/bin/kinema train --config configs/moving-digits-all.yaml --out runs/coh2/P-st \
    --steps 1500 --set model.patch_size=2 --set model.spacetime_attention_levels=[2] --set train.sample_every=0 \
    --set train.checkpoint_every=500 > runs/coh2/P-st.log 2>&1
