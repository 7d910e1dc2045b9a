#!/bin/sh
# kinema eval of the arms named ($@) at their latest EMA models, task by task with the arms side by side (one thread
# each): prediction (4 given -> 12), interpolation (first + last -> 14), text -> video (guidance 3); 100 held-out
# clips each, dpmpp_2m 15 steps, seed 0.
set -u
cd /work/main
K=.venv/bin/kinema
OUT=runs/c3
C="--sampler dpmpp_2m --steps 15 --num 100"
e() { arm=$1 name=$2; shift 2; OMP_NUM_THREADS=1 $K eval --model runs/c3/$arm/model $C "$@" \
      --out $OUT/ev-$arm-$name > $OUT/ev-$arm-$name.log 2>&1; }
for task in predict interpolate text; do
  case $task in
    predict) opts="--task predict --context 4" ;;
    interpolate) opts="--task interpolate" ;;
    text) opts="--cond text --guidance 3" ;;
  esac
  for arm in "$@"; do e $arm $task $opts & done
  wait
done
echo "$* evaluated $(date)" >> $OUT/summary.txt
