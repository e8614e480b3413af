#!/usr/bin/env bash
# Issue 19's two missing search measurements, as one script for a lent GPU machine (~7.5 min):
#
#   benchmarks/search_gpu.sh OUT_DIR [CIFAR_TRAIN_TAR_GZ]      # default tar: .gpu/cifar10/train.tar.gz
#   TINY=1 benchmarks/search_gpu.sh /tmp/out                    # the whole pipeline, tiny, on a CPU (~5 min at load 10)
#
# (a) CPU, in the background: benchmarks/search_strategies.py's 100-trial budget, one process per
#     (strategy, seed) (4 x 5 by default, PAR at a time, one torch thread, niced), every search
#     kept in OUT/a/stores; at the end one table from all stores (a search cut by the deadline
#     counts for the budgets it reached): OUT/search_strategies.md and .json.
# (b) GPU, meanwhile: an `archzoo search` of NASNet cells on a CIFAR-10 proxy (PNGs drawn from the
#     45,000-image training split only, so the 5,000 held-out images stay unseen), then the winner
#     scaled to the parameter count of a hand-designed zoo model (ResNet-20, 0.27M) and both trained
#     side by side by `archzoo train` with the CIFAR recipe of benchmarks/cifar10.py for one epoch
#     count sized to the time budget; held-out accuracy of both: OUT/search_vs_zoo.md and .json.
#
# Every stage runs under `timeout` against a deadline, so the script ends within its budget and
# writes what it has. Runs from the repository root without installing (PYTHONPATH=src). Budgets
# (environment, defaults sized for ~6 free CPU cores and a shared GPU in 8 minutes):
#   (a) TRIALS=100 SEEDS=5 STRATEGIES="random evolution rl pnas" BUDGETS="25 50 100" PAR=10 NICE=5
#       A_S=420 (seconds from the start after which (a) stops)
#   (b) DEVICE=cuda PROXY_PER_CLASS=1000 PROXY_STRATEGY=evolution PROXY_BLOCKS=3 PROXY_FILTERS=16
#       PROXY_EPOCHS=3 PROXY_TRIALS=400 PROXY_WORKERS=2 SEARCH_S=130 BASELINE=resnet20 NUM_NORMAL=2
#       TRAIN_S=230 (time limit of the two trainings) MAX_EPOCHS=60 FINAL_BATCH=512 PICK_STEPS=10
#       FINAL_EXTRA (more flags for both trainings)
set -uo pipefail
out=${1:?usage: benchmarks/search_gpu.sh OUT_DIR [CIFAR_TRAIN_TAR_GZ]}; tarball=${2:-.gpu/cifar10/train.tar.gz}
if [[ "${TINY:-0}" == 1 ]]; then  # a local end-to-end check: everything tiny, on the CPU
  : "${TRIALS:=3}" "${SEEDS:=1}" "${BUDGETS:=2 3}" "${PAR:=2}" "${A_S:=240}" "${DEVICE:=cpu}" "${PROXY_PER_CLASS:=30}"
  : "${PROXY_TRIALS:=3}" "${PROXY_WORKERS:=2}" "${SEARCH_S:=60}" "${PROXY_FILTERS:=4}" "${PROXY_BLOCKS:=2}"
  : "${PROXY_EPOCHS:=1}" "${TRAIN_S:=60}" "${MAX_EPOCHS:=1}" "${FINAL_EXTRA:=--train-limit 256 --val-limit 128 -b 64}"
  : "${FINAL_BATCH:=64}" "${STRATEGIES:=random pnas}" "${NICE:=0}" "${PICK_STEPS:=1}"
fi
TRIALS=${TRIALS:-100}; SEEDS=${SEEDS:-5}; STRATEGIES=${STRATEGIES:-random evolution rl pnas}
BUDGETS=${BUDGETS:-25 50 100}; PAR=${PAR:-10}; NICE=${NICE:-5}; A_S=${A_S:-420}
DEVICE=${DEVICE:-cuda}; PROXY_PER_CLASS=${PROXY_PER_CLASS:-1000}; PROXY_STRATEGY=${PROXY_STRATEGY:-evolution}
PROXY_BLOCKS=${PROXY_BLOCKS:-3}; PROXY_FILTERS=${PROXY_FILTERS:-16}; PROXY_EPOCHS=${PROXY_EPOCHS:-3}
PROXY_TRIALS=${PROXY_TRIALS:-400}; PROXY_WORKERS=${PROXY_WORKERS:-2}; SEARCH_S=${SEARCH_S:-130}
BASELINE=${BASELINE:-resnet20}; NUM_NORMAL=${NUM_NORMAL:-2}; TRAIN_S=${TRAIN_S:-230}; MAX_EPOCHS=${MAX_EPOCHS:-60}
FINAL_BATCH=${FINAL_BATCH:-512}; FINAL_EXTRA=${FINAL_EXTRA:-}; PICK_STEPS=${PICK_STEPS:-10}

export PYTHONPATH=$PWD/src${PYTHONPATH:+:$PYTHONPATH} PYTHONUNBUFFERED=1 OMP_NUM_THREADS=1 MKL_NUM_THREADS=1
export ARCHZOO_CACHE=${ARCHZOO_CACHE:-/tmp/archzoo_cache}
mkdir -p "$out/a/stores" "$out/a/runs" "$out/a/logs" "$out/b"
out=$(cd "$out" && pwd); T0=$(date +%s)
stamp() { echo "[$(( $(date +%s) - T0 )) s] $*" | tee -a "$out/timeline.txt"; }
{ nproc; uptime; nvidia-smi -L 2>/dev/null; python3 -c "import torch, optuna, sqlalchemy; print('torch', torch.__version__, \
'optuna', optuna.__version__, 'sqlalchemy', sqlalchemy.__version__, 'cuda', torch.cuda.is_available())"; } 2>&1 | tee "$out/machine.txt"
python3 -c "import archzoo.search.runner, archzoo.registry as r; r.model_card('searched_cellnet')" || { stamp "archzoo does not import"; exit 1; }

# ---- (a) the strategies' 100-trial budget, on the CPU, in the background ------------------------
export A_END=$(( T0 + A_S )) NICE TRIALS OUT_A=$out/a
a_job() {  # one (strategy, seed) search; skipped when too little time is left to start it
  local start; start=$(date +%s); local left=$(( A_END - start ))
  if (( left < 20 )); then echo "$1 seed $2: not started (deadline)"; return 0; fi
  timeout -k 5 "$left" nice -n "$NICE" python3 benchmarks/search_strategies.py --strategies "$1" --seeds 1 \
      --first-seed "$2" --trials "$TRIALS" --keep "$OUT_A/stores" --json "$OUT_A/runs/$1_$2.json" \
      > "$OUT_A/logs/$1_$2.log" 2>&1
  echo "$1 seed $2: exit $? after $(( $(date +%s) - start )) s (124: stopped by the deadline)"
}
export -f a_job
stamp "(a) $SEEDS seeds x [$STRATEGIES] x $TRIALS trials, $PAR at a time, until +$A_S s"
( for k in $(seq 0 $(( SEEDS - 1 ))); do for s in $STRATEGIES; do echo "$s $k"; done; done \
    | xargs -P "$PAR" -n 2 bash -c 'a_job "$@"' _ > "$out/a/jobs.txt" 2>&1 ) &
a_pid=$!

# ---- (b) CIFAR proxy search on the GPU, then the winner against the zoo model -------------------
B=$out/b; w=/tmp/search_gpu; mkdir -p "$w/c10"
tar -xzf "$tarball" -C "$w/c10" || stamp "could not unpack $tarball"
data=$w/c10/train
timeout 120 python3 benchmarks/search_vs_zoo.py proxy-data --data "$data" --out "$w/proxy" \
    --per-class "$PROXY_PER_CLASS" 2>&1 | tail -n 2 | tee "$B/proxy_data.txt"
stamp "(b) proxy search: $PROXY_STRATEGY, cells of $PROXY_BLOCKS blocks, F=$PROXY_FILTERS, $PROXY_EPOCHS epochs, \
$PROXY_WORKERS workers on $DEVICE, for at most $SEARCH_S s"
search_args=(--space cells --strategy "$PROXY_STRATEGY" --blocks "$PROXY_BLOCKS" --filters "$PROXY_FILTERS" --num-normal 1
             --data "$w/proxy" --epochs "$PROXY_EPOCHS" --batch-size 128 --lr 0.1 --trials "$PROXY_TRIALS" --seed 0
             --out "$B/search" --device "$DEVICE")
timeout -k 5 "$SEARCH_S" python3 -m archzoo search "${search_args[@]}" --workers "$PROXY_WORKERS" --threads 1 \
    --no-progress > "$B/search.log" 2>&1
stamp "(b) search exit $? ($(grep -c trial_end "$B/search/events.jsonl" 2>/dev/null) trials); writing its report"
timeout 60 python3 -m archzoo search "${search_args[@]}" --report >> "$B/search.log" 2>&1

left=$(( T0 + A_S - $(date +%s) ))  # the trainings end with (a)
train_s=$(( left - 25 < TRAIN_S ? left - 25 : TRAIN_S )); train_s=$(( train_s < 60 ? 60 : train_s ))
timeout 90 python3 benchmarks/search_vs_zoo.py pick --best "$B/search/best.json" --baseline "$BASELINE" \
    --num-normal "$NUM_NORMAL" --device "$DEVICE" --batch "$FINAL_BATCH" --budget $(( train_s - 35 )) \
    --max-epochs "$MAX_EPOCHS" --min-epochs 1 --steps "$PICK_STEPS" --out "$B/pick.json" > "$B/pick.log" 2>&1
stamp "(b) pick exit $?; training both for at most $train_s s"
if [[ -f "$B/pick.json" ]]; then
  epochs=$(python3 -c "import json; print(json.load(open('$B/pick.json'))['epochs'])")
  recipe=(--data "$data" --val-split 0.1 --log-json --overwrite --device "$DEVICE" --epochs "$epochs"
          -b "$FINAL_BATCH" --lr 0.4 --opt sgd --momentum 0.9 --nesterov --weight-decay 5e-4 --sched cosine
          --warmup-epochs 2 --label-smoothing 0.1 --ema 0.998 --augment basic --pad 4 --flip --seed 0)
  pids=()
  for which in searched baseline; do
    mapfile -t kw < <(python3 benchmarks/search_vs_zoo.py kwargs "$B/pick.json" $which | grep .)
    model=$(python3 -c "import json; print(json.load(open('$B/pick.json'))['$which']['model'])")
    args=("$model" "${recipe[@]}" --out "$w/$which")
    (( ${#kw[@]} )) && args+=(--model-kwargs "${kw[@]}")
    echo "archzoo train ${args[*]} $FINAL_EXTRA" > "$B/$which.cmd"
    # shellcheck disable=SC2086
    timeout -k 5 "$train_s" python3 -m archzoo train "${args[@]}" $FINAL_EXTRA > "$B/$which.log" 2> "$B/$which.err" &
    pids+=($!)
  done
  for pid in "${pids[@]}"; do wait "$pid"; echo "training $pid exit $?" >> "$out/timeline.txt"; done
  for which in searched baseline; do cp "$w/$which/summary.json" "$B/${which}_summary.json" 2>/dev/null; done
fi
python3 benchmarks/search_vs_zoo.py summary --pick "$B/pick.json" --search "$B/search" \
    --runs "searched=$B/searched.log" "baseline=$B/baseline.log" --json "$out/search_vs_zoo.json" \
    | tee "$out/search_vs_zoo.md"
stamp "(b) done"

# ---- (a) the table ------------------------------------------------------------------------------
wait "$a_pid"
stamp "(a) done: $(ls "$out"/a/runs | wc -l) of $(( SEEDS * $(wc -w <<< "$STRATEGIES") )) searches finished all $TRIALS trials"
# shellcheck disable=SC2086
python3 benchmarks/search_strategies.py --strategies $STRATEGIES --seeds 0 --trials "$TRIALS" --budgets $BUDGETS \
    --collect "$out/a/stores" --json "$out/search_strategies.json" 2> "$out/a/merge.err" | tee "$out/search_strategies.md"
uptime >> "$out/machine.txt"
stamp "end"
