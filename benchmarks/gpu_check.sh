#!/usr/bin/env bash
# The GPU rows of benchmarks/RESULTS.md in one run (issues 4 and 6), for a machine with an NVIDIA GPU:
#   1. one paper-scale training step loop (bench_train.py --scale paper: ~12,000 videos x ~120 s of 4096-d fp16
#      features on the GPU, ~3 M triplets), timed over LIMIT_STEPS steps and projected to an epoch and 25 epochs
#      (goal: 25 epochs <= 5 min on one H100);
#   2. BiT-M-R152x2 frames/s with random weights (bench_extract.py --backbone bit): needs PyAV; skipped, with a
#      note in its JSON, where `import av` fails.
# Writes gpu.txt, train_paper.json, extract_bit.json (and .err logs) to $OUT (default benchmarks/gpu_out).
# Needs python3 with a CUDA torch and numpy (plus scikit-image and av for 2); cezsar is imported from this
# checkout, so nothing is installed. On the project's lent GPU machine (no network) PyAV travels as a wheel:
# see /work/.library/device/README.md ("a missing Python package can travel as wheels").
#
#   OUT=/tmp/gpu bash benchmarks/gpu_check.sh                  # GPU machine
#   DEVICE=cpu VIDEOS=300 LIMIT_STEPS=3 bash benchmarks/gpu_check.sh   # smoke test of the script on a CPU
set -uo pipefail
cd "$(dirname "$0")/.."
OUT="${OUT:-benchmarks/gpu_out}"
DEVICE="${DEVICE:-cuda}"
LIMIT_STEPS="${LIMIT_STEPS:-3000}"  # of ~23,000 steps per epoch: ~13 % measured, the rest projected
VIDEOS="${VIDEOS:-}"                # fewer videos in the bank (the step cost does not depend on it)
PY="${PY:-python3}"
mkdir -p "$OUT"
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1

{ date -u; nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv 2>&1 || true
  "$PY" -c "import torch; print('torch', torch.__version__, 'cuda', torch.cuda.is_available())"; } > "$OUT/gpu.txt"

"$PY" benchmarks/bench_train.py --scale paper --device "$DEVICE" --limit-steps "$LIMIT_STEPS" \
  ${VIDEOS:+--videos "$VIDEOS"} > "$OUT/train_paper.json" 2> "$OUT/train_paper.err"
echo "train_paper: exit $?"

if "$PY" -c "import av, skimage" 2>/dev/null; then
  "$PY" benchmarks/bench_extract.py --backbone bit --device "$DEVICE" --batch 64 --clips 4 \
    > "$OUT/extract_bit.json" 2> "$OUT/extract_bit.err"
  echo "extract_bit: exit $?"
else
  echo '{"skipped": "PyAV (av) or scikit-image missing: carry their wheels"}' > "$OUT/extract_bit.json"
  echo "extract_bit: skipped (no PyAV)"
fi
cat "$OUT"/*.json
