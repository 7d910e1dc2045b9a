#!/bin/sh
# text -> video evals: the retrained text model ($1) against the shipped one, 100 held-out prompts, dpmpp_2m 15
set -u
cd /work/main
K=.venv/bin/kinema
C="--cond text --sampler dpmpp_2m --steps 15 --num 100"
e() { m=$1 name=$2; shift 2; OMP_NUM_THREADS=1 $K eval --model $m $C "$@" --out runs/text2/ev-$name > runs/text2/ev-$name.log 2>&1; }
e $1 new-g3 --guidance 3 & e kinema/pretrained/moving-digits-text old-g3 --guidance 3 & wait
e $1 new-g5 --guidance 5 & e $1 new-g2 --guidance 2 & wait
echo "text evals done $(date)" >> runs/text2/summary.txt
