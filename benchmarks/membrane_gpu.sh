#!/usr/bin/env bash
# The GPU half of the membrane benchmark, as one script for a lent GPU machine:
#
#   benchmarks/membrane_gpu.sh MEMBRANE_DIR OUT_DIR [STEPS]
#
# Trains the U-Net of `unet.membrane` (base width 16, batch norm, 1.94M parameters) on ISBI slices
# 0-19 and scores it on the held-out slices 20-24, two recipes side by side on the one GPU:
#   a. "256": slices resized 512 -> 256, as the shipped weights were trained (300 steps on a CPU);
#   b. "512": the native scale, random 256-pixel crops, evaluated on the whole 512x512 slices.
# Both: --augment unet (flips, 90-degree turns, rotation/scale/shift, elastic, grey jitter), loss
# ce+dice, AdamW, cosine schedule, batch 8, STEPS steps (default 4000). An epoch of 20 slices is
# 3 steps, and the DataLoader's workers start anew each epoch, so the training folder lists every
# slice 20 times (symbolic links): 50 steps an epoch. Runs from the repository root without
# installing (PYTHONPATH=src); MEMBRANE_DIR holds image/N.png and label/N.png, N = 0..24.
# Environment: TRAIN_S (time limit of each training, default 500 s; the best weights so far are
# scored when it cuts one short), WORKERS (DataLoader processes per training, default 7).
set -uo pipefail
src=$1; out=$2; steps=${3:-4000}; train_s=${TRAIN_S:-500}; workers=${WORKERS:-7}
export PYTHONPATH=$PWD/src${PYTHONPATH:+:$PYTHONPATH} PYTHONUNBUFFERED=1
mkdir -p "$out"
nvidia-smi -L; python3 -c "import torch; print('torch', torch.__version__)"
work=/tmp/membrane; rm -rf $work; mkdir -p $work/train/image $work/train/label $work/val/image $work/val/label
for i in $(seq 0 19); do for r in $(seq 0 19); do
    ln -s "$(realpath "$src/image/$i.png")" $work/train/image/${i}_$r.png
    ln -s "$(realpath "$src/label/$i.png")" $work/train/label/${i}_$r.png
done; done
for i in $(seq 20 24); do cp "$src/image/$i.png" $work/val/image/; cp "$src/label/$i.png" $work/val/label/; done
epochs=$(( (steps + 49) / 50 ))
common="--data $work/train --val-data $work/val --model-kwargs base_width=16 --augment unet --loss ce+dice
        --opt adamw --lr 0.003 --weight-decay 0.01 --warmup-epochs 2 --epochs $epochs -b 8 --workers $workers
        --eval-every 5 --log-json --no-compile"
timeout $train_s python3 -m archzoo train unet $common --image-size 256 --out /tmp/u256 > "$out/u256.log" 2> "$out/u256.err" &
timeout $train_s python3 -m archzoo train unet $common --crop-size 256 --out /tmp/u512 > "$out/u512.log" 2> "$out/u512.err" &
wait
for r in u256 u512; do
    tail -n 2 "$out/$r.err"
    cp /tmp/$r/best.safetensors "$out/$r.best.safetensors" 2>/dev/null
    cp /tmp/$r/summary.json "$out/$r.summary.json" 2>/dev/null
    python3 -m archzoo eval /tmp/$r/best.safetensors --data $work/val --json > "$out/$r.eval.json" 2>> "$out/$r.err"
    echo "$r: $(head -c 600 "$out/$r.eval.json")"
done
