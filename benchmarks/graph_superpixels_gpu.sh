#!/usr/bin/env bash
# Graph networks on CIFAR-10 superpixels at full size, on one GPU: all 50,000 training images
# (45,000 trained on, the 5,000 of archzoo train's seeded --val-split 0.1 held out), the paper's
# models (GCN, GAT, gated GCN at ~100k parameters, 150 SLIC superpixels) and optimiser (Adam,
# lr 1e-3, batches of 128; Dwivedi et al. 2020, arXiv:2003.00982, train 100-200 epochs with
# lr halved on plateaus, here a cosine schedule over EPOCHS), LeNet-5 beside them.
#
#   bash benchmarks/graph_superpixels_gpu.sh                # EPOCHS=100: the paper's length
#   EPOCHS=15 OUT=/tmp/out bash benchmarks/graph_superpixels_gpu.sh --models gcn_superpixel
#
# TAR: the gzipped CIFAR-10 tree (default ../shared/data/cifar10/train.tar.gz); WORK: where it is
# unpacked (default /tmp/cifar10_gnn); OUT: where graph_superpixels_gpu.json and the log go;
# DEVICE: cuda (default), or cpu for a smoke test (EPOCHS=1 ... --train-limit 200 --val-limit 100).
# Extra arguments go to benchmarks/graph_superpixels.py. The graphs are built first by every core.
set -euo pipefail
cd "$(dirname "$0")/.."
TAR=${TAR:-../shared/data/cifar10/train.tar.gz}
WORK=${WORK:-/tmp/cifar10_gnn}
OUT=${OUT:-.}
EPOCHS=${EPOCHS:-100}
DEVICE=${DEVICE:-cuda}
PYTHON=${PYTHON:-python3}
mkdir -p "$WORK" "$OUT"
[ -d "$WORK/train" ] || tar -xzf "$TAR" -C "$WORK"
export PYTHONPATH="$PWD/src${PYTHONPATH:+:$PYTHONPATH}"
"$PYTHON" -c "import torch; print('torch', torch.__version__, 'cuda', torch.cuda.is_available())"
"$PYTHON" benchmarks/graph_superpixels.py --data "$WORK/train" --device "$DEVICE" --epochs "$EPOCHS" --batch-size 128 \
    --threads 4 --workers "$(nproc)" --json "$OUT/graph_superpixels_gpu.json" "$@" 2>&1 | tee "$OUT/graph_superpixels_gpu.log"
