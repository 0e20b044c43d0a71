#!/usr/bin/env bash
# The GPU training check, for a machine with one CUDA GPU (written for an H200), from the
# repository root with torch, timm and this repo installed:
#
#   bash bench/gpu_train_check.sh [DIR]          # table + data: under 6 minutes
#   bash bench/gpu_train_check.sh DIR tests      # the CUDA-marked tests: under 3 minutes
#
# Parts (default "table data"), each under its own time limit, results in DIR (default: $OUT,
# else runs/gpu-check):
#   table  bench/train_throughput.py: ours vs timm, ViT-B/16 and ViT-S/16 at 224, batch 256,
#          bf16 + fused AdamW + TF32, eager and compiled -> train_throughput.md (<= 220 s)
#   data   pretrain ViT-B/16 on pre-rendered FractalDB (50 x 100 at 224 px, 3 epochs) with the
#          default fast path -> data/metrics.jsonl: images/s and data_bound_share (<= 120 s)
#   tests  pytest -m cuda tests/training: bf16 vs fp32 curve, resume after SIGKILL (<= 170 s)
# Nothing here writes a figure into docs/: copy the table there by hand, with the card and date.
set -uo pipefail
cd "$(dirname "$0")/.."
dir=${1:-${OUT:-runs/gpu-check}}
shift || true
parts=("$@")
[ "${#parts[@]}" -gt 0 ] || parts=(table data)
py=${PYTHON:-python}
mkdir -p "$dir"
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
start=$SECONDS
status=0

{
    nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv
    "$py" -c 'import torch, timm; print("torch", torch.__version__, "cuda", torch.version.cuda,
          "timm", timm.__version__, torch.cuda.get_device_name())'
    nproc
} > "$dir/device.txt" 2>&1
cat "$dir/device.txt"

part() {  # part NAME LIMIT_S COMMAND...: run with a limit, log to DIR/NAME.log, keep going
    local name=$1 limit=$2
    shift 2
    printf '\n=== %s (limit %ds, at %ds)\n' "$name" "$limit" "$((SECONDS - start))"
    timeout --kill-after=10 "$limit" "$@" 2>&1 | tee "$dir/$name.log"
    local rc=${PIPESTATUS[0]}
    [ "$rc" -eq 0 ] || { echo "=== $name failed: exit $rc"; status=1; }
}

for p in "${parts[@]}"; do
    case $p in
    table)
        part table 220 "$py" bench/train_throughput.py --device cuda \
            --arch vit_base_patch16_224 vit_small_patch16_224 --batch-size 256 \
            --compile both --steps 10 --rounds 3 --out "$dir/train_throughput.md"
        ;;
    data)
        part data 120 "$py" -m training.run pretrain --data fractal --fractal-classes 50 \
            --fractal-instances 100 --cache-dir "$dir/fractal-cache" \
            --arch vit_base_patch16_224 --batch-size 256 --epochs 3 --warmup-epochs 0.5 \
            --checkpoint-every 0 --no-progress --out "$dir/data"
        ;;
    tests)
        part tests 170 "$py" -m pytest -m cuda tests/training -q -p no:cacheprovider -rs
        ;;
    *)
        echo "unknown part $p (table, data, tests)"
        status=1
        ;;
    esac
done
printf '\n=== done in %ds, status %d\n' "$((SECONDS - start))" "$status"
exit "$status"
