#!/usr/bin/env bash
# One-GPU check in a few minutes: the batch-size table (python -m emberformer.bench) at the seed
# configuration and one training epoch, on synthetic fires of the real data's frame size (400x400).
#
#   scripts/gpu_check.sh [RESULTS_DIR] [HW] [OVERRIDE ...]
#
#   RESULTS_DIR  where the results go (default ./gpu_check_results)
#   HW           hardware preset (or env HW): rtx3090 (default: the reference guide's run, fp16), a6000,
#                h100, auto; or cpu: the same steps with tiny data and a tiny model, so the
#                script can be tried on a machine without a GPU (well under a minute)
#   OVERRIDE     Hydra overrides added to both runs, except bench.* ones, which go to the bench
#                only (env EXTRA_OVERRIDES, space-separated, does the same); env BENCH_OVERRIDES /
#                TRAIN_OVERRIDES are added to one of the runs only
#   env PYTHON   the interpreter (default: python)
#   env KEEP_CHECKPOINTS=1  keep the training run's checkpoints/ (removed by default: a one-epoch
#                model is worth nothing and the results folder stays small)
#
# Data: data=synthetic data.size=400 data.num_sequences=24 data.max_frames=12 (generated once
# into $EMBERFORMER_CACHE, default ~/.cache/emberformer). Model, loss, optimizer: the seed's
# (experiment=seed_rtx3090) with the chosen hardware preset; the epoch runs at the experiment's
# batch size 16 unless an override says otherwise (e.g. TRAIN_OVERRIDES=hardware.batch_size=32).
#
# Writes RESULTS_DIR/
#   nvidia-smi.txt        nvidia-smi -L and the GPU's name/memory/driver (or why there is none)
#   env.txt               python, torch, CUDA as torch sees them
#   bench_table.md        the batch-size table (bench_table.json: the same as data)
#   bench_console.log     the bench run's console
#   train_console.log     the training epoch's console (banner, tqdm bars, epoch line, test)
#   train_metrics.jsonl   the epoch's logged values
#   timings.txt           wall seconds and exit status of each step
#   bench_run/ train_run/ the two Hydra run folders
# Exit status: 0 when every step succeeded, else 1 (the later steps still run).
set -uo pipefail

OUT=${1:-./gpu_check_results}
HW=${2:-${HW:-rtx3090}}
shift $(( $# > 2 ? 2 : $# ))
PY=${PYTHON:-python}
REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)

mkdir -p "$OUT"
OUT=$(cd "$OUT" && pwd)
rm -rf "$OUT/bench_run" "$OUT/train_run"
: > "$OUT/timings.txt"

read -r -a ARGS <<< "${EXTRA_OVERRIDES:-}"
read -r -a BENCH_EXTRA <<< "${BENCH_OVERRIDES:-}"
read -r -a TRAIN_EXTRA <<< "${TRAIN_OVERRIDES:-}"
EXTRA=()
for a in ${ARGS[@]+"${ARGS[@]}"} "$@"; do
  if [[ "$a" == bench.* || "$a" == bench=* ]]; then BENCH_EXTRA+=("$a"); else EXTRA+=("$a"); fi
done

if [[ "$HW" == "cpu" ]]; then
  COMMON=(debug=fast hardware=cpu)
  BENCH=("bench.batch_sizes=[2,4]" bench.steps=2 bench.warmup=1)
  TRAIN=(trainer.epochs=1 logger=none)
else
  COMMON=(experiment=seed_rtx3090 "hardware=$HW" data=synthetic data.size=400
          data.num_sequences=24 data.max_frames=12)
  case "$HW" in
    rtx3090) SIZES="[8,12,16,20,24]" ;;   # the reference guide's "Batch Size Impact" rows
    a6000)   SIZES="[8,16,24,32,48]" ;;
    h100)    SIZES="[8,16,32,48,64]" ;;
    *)       SIZES="[4,8,16,24,32]" ;;
  esac
  BENCH=("bench.batch_sizes=$SIZES")
  TRAIN=(trainer.epochs=1 logger=none)
fi

FAILED=0
step() {  # step NAME LOG CMD...: run, tee the console into LOG, record time and status
  local name=$1 log=$2; shift 2
  echo "== $name: $*" | tee "$log"
  local t0=$SECONDS
  "$@" 2>&1 | tee -a "$log"
  local rc=${PIPESTATUS[0]}
  echo "$name: ${rc} exit status, $(( SECONDS - t0 )) s" | tee -a "$OUT/timings.txt"
  [[ $rc -eq 0 ]] || FAILED=1
}

{
  if command -v nvidia-smi >/dev/null 2>&1; then
    nvidia-smi -L
    nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv
  else
    echo "nvidia-smi not found: no NVIDIA driver on this machine (HW=$HW)"
  fi
} > "$OUT/nvidia-smi.txt" 2>&1

"$PY" - > "$OUT/env.txt" 2>&1 <<'EOF'
import platform, torch
print("python", platform.python_version(), "| torch", torch.__version__, "| CUDA build", torch.version.cuda)
print("cuda available:", torch.cuda.is_available(),
      "|", ", ".join(torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())) or "no GPU")
EOF

cd "$REPO"
export PYTHONUNBUFFERED=1 MPLBACKEND=${MPLBACKEND:-Agg}

step bench "$OUT/bench_console.log" "$PY" -m emberformer.bench "${COMMON[@]}" "${BENCH[@]}" \
  ${EXTRA[@]+"${EXTRA[@]}"} ${BENCH_EXTRA[@]+"${BENCH_EXTRA[@]}"} "hydra.run.dir='$OUT/bench_run'"
for f in bench_table.md bench_table.json; do
  [[ -f "$OUT/bench_run/$f" ]] && cp "$OUT/bench_run/$f" "$OUT/$f"
done

step train "$OUT/train_console.log" "$PY" -m emberformer.train "${COMMON[@]}" "${TRAIN[@]}" \
  ${EXTRA[@]+"${EXTRA[@]}"} ${TRAIN_EXTRA[@]+"${TRAIN_EXTRA[@]}"} "hydra.run.dir='$OUT/train_run'"
[[ -f "$OUT/train_run/metrics.jsonl" ]] && cp "$OUT/train_run/metrics.jsonl" "$OUT/train_metrics.jsonl"
[[ "${KEEP_CHECKPOINTS:-0}" == "1" ]] || rm -rf "$OUT/train_run/checkpoints"

echo "Results in $OUT:"
ls -1 "$OUT"
exit $FAILED
