#!/usr/bin/env bash
# One device call on a GPU host (under 8 minutes): what the card and onnxruntime are, then
# bench/gpu_bench.py's stages in order of importance (raw, server, tensorrt, precision), every
# row written to $OUT as it is measured, so a run cut short keeps what it had.
#
#   OUT=/tmp/gpu-results bash bench/gpu_oneshot.sh
#
# Needs a Python with this repository's `.[dev]` and the `gpu` extra (torch to export the
# random ViT-B/16, onnxruntime-gpu with its CUDA 13 / cuDNN 9 libraries): `.venv/bin/python`
# if there is one, else $PYTHON, else python3. Nothing is downloaded. The results are the GPU
# figures docs/performance.md asks for; copy them there with the card, the date and the command.
set -uo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-/tmp/gpu-oneshot}
BUDGET_S=${BUDGET_S:-450}  # the bench's share of the 8 minutes
mkdir -p "$OUT"

python=${PYTHON:-}
for candidate in .venv/bin/python python3; do
    if [ -z "$python" ] && "$candidate" -c "import onnxruntime, torch, httpx" 2>/dev/null; then
        python=$candidate
    fi
done
if [ -z "$python" ]; then
    echo "no Python with onnxruntime, torch and httpx: install .[dev,gpu] first" | tee "$OUT/error.txt"
    exit 2
fi

{
    date -u
    nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.max.sm --format=csv || true
    "$python" -c "import onnxruntime as o; print('onnxruntime', o.__version__, o.get_available_providers())"
    "$python" -c "import torch; print('torch', torch.__version__, 'cuda', torch.cuda.is_available())"
} 2>&1 | tee "$OUT/environment.txt"

# The bench prints each Markdown row as soon as it has it; tee keeps them even if the budget
# runs out mid-stage.
PYTHONPATH=$PWD timeout "$BUDGET_S" "$python" bench/gpu_bench.py --device cuda \
    --stages raw server tensorrt precision --server-seconds 10 --json "$OUT/rows.json" \
    2>"$OUT/gpu_bench.stderr" | tee "$OUT/gpu_bench.md"
echo "exit status ${PIPESTATUS[0]} (124: the budget ran out; the rows above were measured)" \
    | tee -a "$OUT/gpu_bench.md"
