#!/usr/bin/env bash
# The GPU half of the CIFAR-10 benchmark, as one script for a lent GPU machine:
#
#   benchmarks/cifar10_gpu.sh TRAIN_TAR_GZ OUT_DIR [R20_EPOCHS]
#
# 1. The ResNet-20 recipe whose weights ship as resnet20.cifar10 (benchmarks/cifar10.py: SGD
#    Nesterov, batch 256, lr 0.1, 2 warm-up epochs, cosine, wd 5e-4, label smoothing 0.1, EMA,
#    pad-4 crop + flip on the GPU, bf16, channels_last, torch.compile), 200 epochs by default.
#    Its per-epoch log gives the time to 90% held-out accuracy.
# 2. "The best accuracy in 60 seconds": `archzoo train resnet56` with the epoch count sized from
#    run 1's epoch time so that training fits in about 55 s.
#
# Writes the logs, ResNet-20's last weights, resumable state and summaries to OUT_DIR. Runs from
# the repository root without installing (PYTHONPATH=src).
set -uo pipefail
tarball=$1; out=$2; epochs=${3:-200}; extra=${EXTRA:-}  # EXTRA: more flags for both runs (quick checks)
export PYTHONPATH=$PWD/src PYTHONUNBUFFERED=1
mkdir -p /tmp/c10 "$out"
nvidia-smi -L; python3 -c "import torch, torchvision; print('torch', torch.__version__, 'torchvision', torchvision.__version__)"
tar -xzf "$tarball" -C /tmp/c10

# 1. the shipped recipe
timeout 330 python3 benchmarks/cifar10.py --data /tmp/c10/train --out /tmp/r20 --log-json --compile \
    --epochs "$epochs" -b 256 --lr 0.1 --warmup-epochs 2 --ema 0.999 $extra > "$out/r20.log" 2> "$out/r20.err"
echo "resnet20 exit $?"; tail -n 3 "$out/r20.err"
for f in last.safetensors state.safetensors benchmark.json; do cp /tmp/r20/$f "$out/" 2>/dev/null; done
python3 benchmarks/runlog.py "$out/r20.log" | tee "$out/r20_summary.json"   # median epoch time, time to 90% ...

# 2. sixty seconds of resnet56: ~2.8x ResNet-20's work per image, batch 512
e56=$(python3 -c "import json; t=json.load(open('$out/r20_summary.json')).get('median_epoch_s', 1); print(max(5, min(200, int(50 / (2.8 * t)))))")
echo "resnet56 for $e56 epochs"
timeout 200 python3 -m archzoo train resnet56 --data /tmp/c10/train --val-split 0.1 --out /tmp/r56 --log-json \
    --compile --epochs "$e56" -b 512 --lr 0.4 --warmup-epochs 1 --label-smoothing 0.1 --ema 0.99 $extra \
    > "$out/r56.log" 2> "$out/r56.err"
echo "resnet56 exit $?"; tail -n 3 "$out/r56.err"
cp /tmp/r56/summary.json "$out/r56_summary.json" 2>/dev/null
python3 benchmarks/runlog.py "$out/r56.log" --epochs
